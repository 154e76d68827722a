"""`photos_bundled`: 32x32 RGB patches of real photographs that ship with scikit-image/sklearn.

An offline stand-in for CIFAR-10 / downsampled ImageNet (natural-image statistics, 256 levels
per sub-pixel), used for smoke tests and small colour experiments; its bits/dim are NOT
comparable with CIFAR-10 numbers.

Each photo is area-downscaled (PIL BOX filter) by 1, 2 and 4, and every scale is tiled into
non-overlapping 32x32 patches from the top-left corner (the remainder at the right/bottom is
dropped). Near-constant patches (pixel std < 4, e.g. the black surround of the retina image)
are dropped because they carry no structure. Splits are by photo, so no photo (at any scale)
is in two splits:

  train:       astronaut, motorcycle_left, hubble_deep_field, retina (skimage), china (sklearn)
  validation:  rocket (skimage), flower (sklearn)
  test:        chelsea, coffee (skimage)

About 4,250 / 670 / 440 patches. Each split is stored in a fixed-seed shuffled order, so any
prefix of it (eval.max_examples, the images `sample --complete` takes) mixes all its photos
and scales. The synthetic skimage images (color, chessboard, ...) and
motorcycle_right (the stereo partner of motorcycle_left) are not used. If scikit-learn is not
installed, china and flower are skipped (about 3,930 / 335 / 440).
"""

import pathlib

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from pixel_jax.datasets import base
from pixel_jax.datasets._package_data import package_file
from pixel_jax.datasets._package_data import required_package_file

PATCH_SIZE = 32
SCALES = (1, 2, 4)
MIN_PATCH_STD = 4.0

# (split, package, file within the package's data folder).
PHOTOS = (
  ('train', 'skimage', 'data/astronaut.png'),
  ('train', 'skimage', 'data/motorcycle_left.png'),
  ('train', 'skimage', 'data/hubble_deep_field.jpg'),
  ('train', 'skimage', 'data/retina.jpg'),
  ('train', 'sklearn', 'datasets/images/china.jpg'),
  ('validation', 'skimage', 'data/rocket.jpg'),
  ('validation', 'sklearn', 'datasets/images/flower.jpg'),
  ('test', 'skimage', 'data/chelsea.png'),
  ('test', 'skimage', 'data/coffee.png'),
)


def photo_patches(photo_file: pathlib.Path) -> np.ndarray:
  """Cuts one photo into patches: uint8 [N, 32, 32, 3], scale by scale in raster order."""
  with photo_file.open('rb') as f:
    photo = Image.open(f).convert('RGB')
    photo.load()
  patches = []
  for scale in SCALES:
    width, height = photo.size
    image = np.asarray(photo.resize((width // scale, height // scale), Image.Resampling.BOX))
    rows, cols = image.shape[0] // PATCH_SIZE, image.shape[1] // PATCH_SIZE
    tiles = (
      image[: rows * PATCH_SIZE, : cols * PATCH_SIZE]
      .reshape(rows, PATCH_SIZE, cols, PATCH_SIZE, 3)
      .transpose(0, 2, 1, 3, 4)
    )
    for r in range(rows):
      for c in range(cols):
        if tiles[r, c].std() >= MIN_PATCH_STD:
          patches.append(tiles[r, c])
  return np.stack(patches).astype(np.uint8)


class PhotosBundled(base.OfflineBuilder):
  """32x32x3 patches of real photos bundled with scikit-image / scikit-learn, split by photo."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
    '1.0.0': 'Initial release.',
    '1.1.0': 'Splits stored in shuffled order instead of photo by photo.',
  }
  IMAGE_SHAPE = (PATCH_SIZE, PATCH_SIZE, 3)
  HOMEPAGE = 'https://scikit-image.org/docs/stable/api/skimage.data.html'

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    return {split: self._generate_examples(split) for split in ('train', 'validation', 'test')}

  def _generate_examples(self, split: str):
    patches_per_photo = []
    for photo_split, package, relative in PHOTOS:
      if photo_split != split:
        continue
      if package == 'sklearn':  # Optional: scikit-learn's two photos are skipped without it.
        photo_file = package_file(package, relative)
        if photo_file is None or not photo_file.exists():
          continue
      else:
        photo_file = required_package_file(package, relative, 'photos_bundled')
      patches_per_photo.append(photo_patches(photo_file))
    patches = np.concatenate(patches_per_photo)
    # The key is the storage rank: the split is stored in a fixed-seed shuffled order.
    for rank, index in enumerate(base.shuffled_order(len(patches))):
      yield rank, {'image': patches[index]}
