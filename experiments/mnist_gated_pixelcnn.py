"""Gated PixelCNN, 10 layers x h=16, on binarized MNIST (the Gated PixelCNN paper gives no
MNIST number; the PixelRNN paper's PixelCNN: 81.30 nats).

  python -m pixel_jax.main --config=experiments/mnist_gated_pixelcnn.py --workdir=/tmp/mnist_gated

Default: 500 steps of batch 16, offline on the bundled digits; minutes on a 2-core CPU.
"Conditional Image Generation with PixelCNN Decoders" (van den Oord et al., 2016) reports
no binarized MNIST likelihood. Depth and width are our choice: 10 layers of two h=16 stacks
have 67,793 parameters, within 3% of experiments/mnist_pixelcnn.py's 69,409, so the two
compare at equal size (docs/results.md). The paper's network layout (configs.mnist_config):
residual and skip connections, output hidden width 32.
"""

from pixel_jax import configs


def get_config():
  config = configs.mnist_config('gated_pixelcnn')
  config.model.num_layers = 10  # Gated layers (vertical + horizontal stack each).
  config.model.hidden_channels = 16  # h per stack.
  config.model.wavefront = False  # The layer wavefront is a Row LSTM option.
  return config
