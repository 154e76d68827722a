"""A tiny Row LSTM on 8x8 binarized bundled MNIST digits: for tests and smoke runs.

  python -m pixel_jax.main --config=experiments/tiny.py --workdir=/tmp/tiny

Runs offline in well under a minute on one CPU core (most of it compilation). No paper
number: the images are area-downsampled to 8x8 before the static binarization.
"""

from pixel_jax import configs


def get_config():
  config = configs.tiny_config('row_lstm')
  # Every layer in one scan of H + L - 1 rows (models/wavefront.py); docs/results.md times it.
  config.model.wavefront = False
  return config
