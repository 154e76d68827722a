"""Row LSTM, 7 layers x h=16, on binarized MNIST (the paper: 80.54 nats).

  python -m pixel_jax.main --config=experiments/mnist_rowlstm.py --workdir=/tmp/run1

Default: 500 steps of batch 16, offline on the bundled digits: minutes on a 2-core CPU,
validation NLL falling from 543 nats (784 ln 2) to about 96 nats (docs/results.md). The
paper's network (configs.mnist_config): residual and skip connections, output hidden width
32. Paper-level (80.54 nats on the binarized MNIST test set, layers/width not given in the
paper; 7 x 16 here): --config.train.num_steps=200000 on a GPU with binarized_mnist prepared.
"""

from pixel_jax import configs


def get_config():
  config = configs.mnist_config('row_lstm')
  config.model.num_layers = 7  # The paper gives neither depth nor width.
  config.model.hidden_channels = 16
  # Every layer in one scan of H + L - 1 rows (models/wavefront.py); docs/results.md times it.
  config.model.wavefront = False
  return config
