"""Row LSTM, 12 layers x h=128, on CIFAR-10 32x32 (the paper: 3.07 bits/dim).

  python -m pixel_jax.main --config=experiments/cifar10_rowlstm.py --workdir=runs/c10_rowlstm

The paper's network (configs.cifar10_config): residual and skip connections, output hidden
width 1024. The paper reports 3.07 bits/dim on the CIFAR-10 test set for this model; its
ablation of the same model gives 3.07 (residual only), 3.09 (skip only) and 3.06 bits/dim
(both, as here). Needs cifar10 prepared as array_record (see pixel_jax.input_pipeline) and
an accelerator; the paper's number takes days of training. Reports test bits/dim.
"""

from pixel_jax import configs


def get_config():
  config = configs.cifar10_config('row_lstm')
  config.model.num_layers = 12
  config.model.hidden_channels = 128
  # Every layer in one scan of H + L - 1 rows (models/wavefront.py); docs/results.md times it.
  config.model.wavefront = False
  return config
