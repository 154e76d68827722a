"""Diagonal BiLSTM, 12 layers x h=128, on CIFAR-10 32x32 (the paper: 3.00 bits/dim).

  python -m pixel_jax.main --config=experiments/cifar10_diagbilstm.py --workdir=runs/c10_dbl

The paper's network (configs.cifar10_config): residual and skip connections, output hidden
width 1024, 256 levels, 3 channels. Needs cifar10 prepared as array_record and an
accelerator (days of training for the paper's number, 3.00 bits/dim on the CIFAR-10 test
set). Reports test bits/dim.
"""

from pixel_jax import configs


def get_config():
  config = configs.cifar10_config('diagonal_bilstm')
  config.model.num_layers = 12
  config.model.hidden_channels = 128
  config.model.wavefront = False  # The layer wavefront is a Row LSTM option.
  return config
