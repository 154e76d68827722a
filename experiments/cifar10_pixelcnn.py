"""PixelCNN, 15 residual blocks x h=128, on CIFAR-10 32x32 (the paper: 3.14 bits/dim).

  python -m pixel_jax.main --config=experiments/cifar10_pixelcnn.py --workdir=runs/c10_cnn

The paper's network (configs.cifar10_config): residual and skip connections, output hidden
width 1024. Needs cifar10 prepared as array_record and an accelerator; the paper reports
3.14 bits/dim on the CIFAR-10 test set. Reports test bits/dim.
"""

from pixel_jax import configs


def get_config():
  config = configs.cifar10_config('pixelcnn')
  config.model.num_layers = 15  # Residual blocks.
  config.model.hidden_channels = 128
  config.model.wavefront = False  # The layer wavefront is a Row LSTM option.
  return config
