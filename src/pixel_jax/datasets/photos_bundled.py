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

About 4,250 / 670 / 440 patches. The synthetic skimage images (color, chessboard, ...) and
motorcycle_right (the stereo partner of motorcycle_left) are not used. If scikit-learn is not
installed, china and flower are skipped (about 3,930 / 335 / 440).
"""

import pathlib

from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from pixel_jax.datasets._package_data import package_file

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



def photo_patches(photo_file: pathlib.Path) -> tuple[np.ndarray, list[str]]:
  """Cuts one photo into patches: uint8 [N, 32, 32, 3] and a 's{scale}_r{row}_c{col}' key each."""
  with photo_file.open('rb') as f:
    photo = Image.open(f).convert('RGB')
    photo.load()
  patches, keys = [], []
  for scale in SCALES:
    width, height = photo.size
    image = np.asarray(photo.resize((width // scale, height // scale), Image.Resampling.BOX))
    rows, cols = image.shape[0] // PATCH_SIZE, image.shape[1] // PATCH_SIZE
    tiles = image[:rows * PATCH_SIZE, :cols * PATCH_SIZE].reshape(
        rows, PATCH_SIZE, cols, PATCH_SIZE, 3).transpose(0, 2, 1, 3, 4)
    for r in range(rows):
      for c in range(cols):
        if tiles[r, c].std() >= MIN_PATCH_STD:
          patches.append(tiles[r, c])
          keys.append(f's{scale}_r{r}_c{c}')
  return np.stack(patches).astype(np.uint8), keys


class PhotosBundled(tfds.core.GeneratorBasedBuilder):
  """32x32x3 patches of real photos bundled with scikit-image / scikit-learn, split by photo."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's own lookup breaks (needs the importlib_resources backport) when pixel_jax is a
    # namespace package; this file is all it needs.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        # Tensor, not Image: encoding an Image feature needs TensorFlow.
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(PATCH_SIZE, PATCH_SIZE, 3), dtype=np.uint8),
        }),
        disable_shuffling=True,  # Keep photo order: patches stay traceable to their source.
        homepage='https://scikit-image.org/docs/stable/api/skimage.data.html',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    return {
        split: self._generate_examples(split)
        for split in ('train', 'validation', 'test')
    }

  def _generate_examples(self, split: str):
    for photo_split, package, relative in PHOTOS:
      if photo_split != split:
        continue
      photo_file = package_file(package, relative)
      if photo_file is None or not photo_file.exists():
        continue  # Optional package (scikit-learn) not installed.
      name = relative.rsplit('/', 1)[-1].split('.')[0]
      patches, keys = photo_patches(photo_file)
      for patch, key in zip(patches, keys):
        yield f'{name}_{key}', {'image': patch}
