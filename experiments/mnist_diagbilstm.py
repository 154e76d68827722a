"""Diagonal BiLSTM, 7 layers x h=16, on binarized MNIST (the paper: 79.20 nats).

  python -m pixel_jax.main --config=experiments/mnist_diagbilstm.py --workdir=/tmp/mnist_dbl

Default: 200 steps of batch 16, offline on the bundled digits; minutes on a 2-core CPU, the
loss falling from 543 nats (784 ln 2). The paper's network
(configs.mnist_config): residual and skip connections, output hidden width 32.
Paper-level (79.20 nats on the binarized MNIST test set):
--config.train.num_steps=200000 on a GPU with binarized_mnist prepared.
"""

from pixel_jax import configs


def get_config():
  config = configs.mnist_config('diagonal_bilstm')
  config.model.num_layers = 7
  config.model.hidden_channels = 16
  # The slowest MNIST model (~1.1 s/step on CPU): a shorter demo.
  config.train.num_steps = 200
  config.train.eval_every = 100
  config.train.sample_every = 200
  config.model.wavefront = False  # The layer wavefront is a Row LSTM option.
  return config
