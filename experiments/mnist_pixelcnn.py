"""PixelCNN, 15 residual blocks x h=16, on binarized MNIST (the paper: 81.30 nats).

  python -m pixel_jax.main --config=experiments/mnist_pixelcnn.py --workdir=/tmp/mnist_cnn

Default: 500 steps of batch 16, offline on the bundled digits; minutes on a 2-core CPU. The
paper does not give the MNIST PixelCNN's depth or width (15 x h=16 here). The paper's network
(configs.mnist_config): residual and skip connections, output hidden width 32. Paper-level
(81.30 nats on the binarized MNIST test set): --config.train.num_steps=200000 on a GPU with
binarized_mnist prepared.
"""

from pixel_jax import configs


def get_config():
  config = configs.mnist_config('pixelcnn')
  config.model.num_layers = 15  # Residual blocks; the paper gives neither depth nor width.
  config.model.hidden_channels = 16
  config.model.wavefront = False  # The layer wavefront is a Row LSTM option.
  return config
