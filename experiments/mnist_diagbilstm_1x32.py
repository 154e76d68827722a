"""Diagonal BiLSTM, 1 layer x h=32, on binarized MNIST (the paper: 80.75 nats).

  python -m pixel_jax.main --config=experiments/mnist_diagbilstm_1x32.py --workdir=/tmp/dbl1

Default: 500 steps of batch 16, offline on the bundled digits; a few minutes on a 2-core
CPU. The paper's network (configs.mnist_config): residual and skip connections, output hidden
width 32. Paper-level (80.75 nats on the binarized MNIST test set):
--config.train.num_steps=200000 on a GPU with binarized_mnist prepared.
"""

from pixel_jax import configs


def get_config():
  config = configs.mnist_config('diagonal_bilstm')
  config.model.num_layers = 1
  config.model.hidden_channels = 32
  config.model.wavefront = False  # The layer wavefront is a Row LSTM option.
  return config
