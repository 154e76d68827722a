"""Row LSTM, 12 layers x h=128, on CIFAR-10 32x32 (SPEC.md section 6: 3.07 bits/dim).

  python -m pixel_jax.main --config=experiments/cifar10_rowlstm.py --workdir=runs/c10_rowlstm

Needs cifar10 prepared as array_record (see pixel_jax.input_pipeline) and an accelerator;
the paper's number takes days of training. Reports test bits/dim.
"""

from pixel_jax import configs


def get_config():
  config = configs.cifar10_config('row_lstm')
  config.model.num_layers = 12
  config.model.hidden_channels = 128
  return config
