"""Class-conditional PixelCNN, 15 residual blocks x h=16, on binarized MNIST digits 0-9.

  python -m pixel_jax.main --config=experiments/mnist_pixelcnn_classes.py --workdir=/tmp/cnn10
  python -m pixel_jax.sample --workdir=/tmp/cnn10 --labels=0,1,2,3,4,5,6,7,8,9

experiments/mnist_pixelcnn.py with config.model.num_classes=10: every layer adds a learned
per-class bias to its convolutions' pre-activations (models/network.py), and the reported
NLL is the conditional -log p(image | digit). The data is TFDS 'mnist' (statically
binarized), which has labels; binarized_mnist has none. Offline it falls back, like the
other MNIST configs, to the bundled real digits and their labels, with the real MNIST test
set (and its labels) read from data.idx_dir. No paper number: the PixelRNN paper has no
class-conditional model (its successor, van den Oord et al. 2016, conditions Gated PixelCNNs
on ImageNet classes).
"""

from pixel_jax import configs


def get_config():
  config = configs.mnist_config('pixelcnn')
  config.model.num_layers = 15  # As experiments/mnist_pixelcnn.py.
  config.model.hidden_channels = 16
  config.data.name = 'mnist'
  config.model.num_classes = 10
  config.model.wavefront = False  # The layer wavefront is a Row LSTM option.
  return config
