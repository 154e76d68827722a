"""Gated PixelCNN, 15 layers x h=128, on CIFAR-10 32x32 (the Gated PixelCNN paper: 3.03
bits/dim).

  python -m pixel_jax.main --config=experiments/cifar10_gated_pixelcnn.py --workdir=runs/c10_gated

"Conditional Image Generation with PixelCNN Decoders" (van den Oord et al., 2016) reports
3.03 bits/dim on the CIFAR-10 test set. Depth and width here are those of
experiments/cifar10_pixelcnn.py (15 x h=128), our choice. The network layout
(configs.cifar10_config): residual and skip connections, output hidden width 1024. Needs
cifar10 prepared as array_record and an accelerator. Reports test bits/dim.
"""

from pixel_jax import configs


def get_config():
  config = configs.cifar10_config('gated_pixelcnn')
  config.model.num_layers = 15  # Gated layers (vertical + horizontal stack each).
  config.model.hidden_channels = 128  # h per stack.
  config.model.wavefront = False  # The layer wavefront is a Row LSTM option.
  return config
