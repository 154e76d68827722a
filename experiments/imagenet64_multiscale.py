"""Multi-Scale PixelRNN on ImageNet 64x64: a 32x32 small image, then the 64x64 image.

  python -m pixel_jax.main --config=experiments/imagenet64_multiscale.py --workdir=runs/in64ms \
      --config.data.manual_dir=DIR

The paper's sizes (64x64x3, 256 levels, Row LSTM cores, s = 32): the conditional network
is the paper's 64x64 Row LSTM (4 layers, h = 512, no residual), the small-image network
its ImageNet 32x32 Row LSTM (12 layers, h = 384, residual); both with skip connections and
output hidden width 1024. The paper's ImageNet 64x64 number to compare with: 3.63 bits/dim
on the validation set (its 64x64 Row LSTM). The reported number here is the exact joint NLL
of the 64x64 image in bits/dim (models/multiscale.py). Not run in this
repository: needs several accelerators, and in DIR the files that
experiments/imagenet64_rowlstm.py names.
"""

from pixel_jax import configs


def get_config():
  config = configs.imagenet_config('multiscale', image_size=64)
  # The conditional (full 64x64) network: the paper's 64x64 Row LSTM.
  config.model.num_layers = 4
  config.model.hidden_channels = 512
  config.model.residual = False  # The paper's 64x64 model has no residual connections.
  ms = config.model.multiscale
  ms.core = 'row_lstm'
  ms.small_size = 32  # The paper's s: every 2nd pixel.
  ms.subsample = 'stride'
  ms.cond_channels = 64  # c: not given in the paper.
  ms.upsampler_layers = 2  # Strides (2, 1).
  # The small network: the paper's ImageNet 32x32 Row LSTM.
  ms.small_num_layers = 12
  ms.small_hidden_channels = 384
  ms.small_residual = True
  config.train.batch_size = 32
  # Every layer in one scan of H + L - 1 rows (models/wavefront.py); docs/results.md times it.
  config.model.wavefront = False
  return config
