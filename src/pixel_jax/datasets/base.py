"""`OfflineBuilder`: the base of the builders that prepare local files without TensorFlow.

A subclass turns files that are already on this machine (inside an installed package, or in
a folder the user names) into a TFDS dataset that is read with random access:

  builder = tfds.builder(NAME, data_dir=..., file_format='array_record')
  builder.download_and_prepare(file_format='array_record')   # Once; writes ArrayRecord.
  source = tfds.data_source(NAME, split='train', data_dir=...)  # source[i], len(source).

What a subclass provides:
- `VERSION`, `RELEASE_NOTES` and a module docstring (it becomes the dataset description);
- `IMAGE_SHAPE` (H, W, C), `NUM_CLASSES` (None: no 'label' feature) and `HOMEPAGE`;
- optionally `builder_kwargs(data_config)`: the constructor arguments it takes from
  config.data (mnist_idx: the folder of IDX files), with a one-line error naming the field
  when one is missing;
- `_split_generators(dl_manager)`, returning {split: generator of (key, example)} as in any
  TFDS GeneratorBasedBuilder. Examples are {'image': uint8 IMAGE_SHAPE} plus 'label' when
  NUM_CLASSES is set. A generator may read its files lazily, one example at a time, so a
  split larger than memory prepares in constant memory.

What the base class does:
- features are tfds.features.Tensor, never Image: encoding an Image feature needs TensorFlow;
- `disable_shuffling=True`: examples are stored in increasing order of their integer keys,
  so the storage order is whatever the subclass chooses. The bundled splits use
  `shuffled_order`: stored in a fixed-seed random order, so a prefix (eval.max_examples, the
  images `sample --complete` takes) is a fair sample of the split;
- `code_path` points at the subclass's own file (TFDS's default lookup fails when pixel_jax
  is installed as a namespace package).

A subclass lives in its own module of pixel_jax.datasets and is imported by the package's
__init__, which registers it with TFDS under its snake_case class name; from then on
config.data.name may name it (datasets.sources recognises every subclass).
"""

import inspect
from typing import Any, Optional

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

SHUFFLE_SEED = 0  # The seed of every bundled split's storage order.


def shuffled_order(num: int, seed: int = SHUFFLE_SEED) -> np.ndarray:
  """A fixed permutation of range(num): storage rank -> position in the source files."""
  return np.random.default_rng(seed).permutation(num)


class OfflineBuilder(
  tfds.core.GeneratorBasedBuilder,  # type: ignore[call-arg]
  skip_registration=True,
):
  """A TFDS builder for local files, prepared to ArrayRecord without TensorFlow."""

  IMAGE_SHAPE: tuple[int, int, int] = (0, 0, 0)
  NUM_CLASSES: Optional[int] = None
  HOMEPAGE: str = ''

  @classmethod
  def builder_kwargs(cls, data_config: Any) -> dict[str, Any]:
    """Constructor arguments read from config.data; none by default.

    They are passed both when preparing and when reading, so a builder may use them to pick
    its BuilderConfig (and with it, the folder its prepared copy lives in).
    """
    del data_config
    return {}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(inspect.getfile(cls))

  def _info(self) -> tfds.core.DatasetInfo:
    features = {'image': tfds.features.Tensor(shape=self.IMAGE_SHAPE, dtype=np.uint8)}
    if self.NUM_CLASSES is not None:
      features['label'] = tfds.features.ClassLabel(num_classes=self.NUM_CLASSES)
    return tfds.core.DatasetInfo(
      builder=self,
      description=inspect.getmodule(type(self)).__doc__,
      features=tfds.features.FeaturesDict(features),
      supervised_keys=('image', 'label') if self.NUM_CLASSES is not None else None,
      disable_shuffling=True,  # Stored in key order, chosen by the subclass.
      homepage=self.HOMEPAGE,
    )
