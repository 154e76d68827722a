"""A tiny Multi-Scale PixelRNN on 8x8 binarized bundled MNIST digits: for tests and smoke runs.

  python -m pixel_jax.main --config=experiments/tiny_multiscale.py --workdir=/tmp/tiny_ms

A 4x4 small image (every 2nd pixel) with an unconditional Row LSTM, then the 8x8 image with a
conditional Row LSTM. Runs offline in well under a minute on one CPU core (most of it
compilation). No paper number: the digits are area-downsampled to 8x8 before binarization.
"""

from pixel_jax import configs


def get_config():
  config = configs.tiny_config('multiscale')
  ms = config.model.multiscale
  ms.core = 'row_lstm'
  ms.small_size = 4
  ms.cond_channels = 8
  ms.upsampler_layers = 2  # Strides (2, 1).
  ms.small_num_layers = 2
  ms.small_hidden_channels = 8
  # Every layer in one scan of H + L - 1 rows (models/wavefront.py); docs/results.md times it.
  config.model.wavefront = False
  return config
