"""Data for training and evaluation: TFDS ArrayRecord -> numpy, without TensorFlow.

  data = input_pipeline.open(config)   # Resolves config.data once: see data.info.
  train_images = data.load(config.data.train_split)
  batches = input_pipeline.train_batches(config, train_images, seed=..., batch_size=...)

`open` decides once per run which dataset config.data.name really reads (an offline builder
of pixel_jax.datasets, a TFDS catalog dataset, or the bundled-digits fallback; see
pixel_jax.datasets.sources), prepares it if needed, and returns a `Dataset` that reads any of
its splits. Small splits are read into memory as uint8 [N, H, W, C] integer levels (MNIST is
35 MB, CIFAR-10 150 MB) and batched by plain numpy indexing. Large ones
(config.data.streaming=True, the ImageNet configs: ImageNet 64x64 train is 15 GB decoded)
stay on disk: `load` returns a StreamingSplit, which reads the images of each batch by random
access, each process only its own rows. Either way batches are a pure function of
(seed, step), so a run resumed from a checkpoint at step k sees exactly the batches it would
have seen without the crash. docs/design.md section 9 sums this up.

Binarization (num_levels == 2) is named in every report, since MNIST likelihoods differ a lot
between binarizations: 'static' (Bernoulli(x/255) sampled once, the usual stochastically
binarized MNIST), 'dynamic' (resampled every batch), 'threshold' (x > 127; gives much lower,
incomparable NLL), 'none' (data already binary, e.g. binarized_mnist).
"""

import dataclasses
from typing import Iterator, Optional
import zlib

import ml_collections
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from pixel_jax.datasets import imagenet_manual
from pixel_jax.datasets import sources
from pixel_jax.datasets.sources import DatasetUnavailableError  # noqa: F401  (re-exported)

BINARIZATIONS = ('static', 'dynamic', 'threshold', 'none')
# Catalog datasets that are a different resize of ImageNet than the paper's.
NOT_PAPER_IMAGENET = frozenset({'imagenet_resized'})
_READ_CHUNK = 8192


# ------------------------------------------------------------------------------- reading


def _num_examples(source: sources.Source) -> dict[str, int]:
  """{split: number of examples} from the prepared dataset's metadata; {} if unknown."""
  try:
    builder = tfds.builder(source.name, data_dir=source.data_dir, **source.builder_kwargs)
    return {split: info.num_examples for split, info in builder.info.splits.items()}
  except Exception:  # pylint: disable=broad-except
    return {}  # E.g. under tfds.testing.mock_data: let data_source decide.


def _data_source(source: sources.Source, split: str):
  """The random-access reader of `split` (len, [i], batched __getitems__), checked to exist."""
  available = list(_num_examples(source))
  missing = [s for s in sources.split_names(split) if available and s not in available]
  if missing:
    raise ValueError(
      f'Split {missing[0]!r} does not exist in {source.name}; it has '
      f'{sorted(available)}. Set config.data.*_split accordingly (TFDS slices '
      "like 'train[-10%:]' work)."
    )
  return tfds.data_source(
    source.name,
    split=split,
    data_dir=source.data_dir,
    download=False,
    builder_kwargs=source.builder_kwargs or None,
  )


def _read_keys(ds, keys: list[int], what: str) -> np.ndarray:
  """The images of examples `keys` of a data source, uint8 [len(keys), H, W, C]."""
  try:
    examples = ds.__getitems__(keys)  # One batched ArrayRecord read: ~30% faster.
  except TypeError:  # tfds.testing.mock_data's __getitems__ is broken in tfds 4.9.10.
    examples = [ds[k] for k in keys]
  images = np.stack([np.asarray(ex['image']) for ex in examples])
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.dtype != np.uint8:
    raise ValueError(
      f'{what}: expected uint8 images [N, H, W, C], got {images.dtype} {images.shape}.'
    )
  return images


def _read_labels(source: sources.Source, split: str) -> np.ndarray:
  """The 'label' of every example of `split`, int32 [N], in the images' order."""
  ds = _data_source(source, split)
  labels = []
  for start in range(0, len(ds), _READ_CHUNK):
    keys = list(range(start, min(start + _READ_CHUNK, len(ds))))
    try:
      examples = ds.__getitems__(keys)
    except TypeError:  # tfds.testing.mock_data's __getitems__ (see _read_keys).
      examples = [ds[k] for k in keys]
    if examples and 'label' not in examples[0]:
      raise ValueError(
        f'{source.name}/{split} has no labels; a class-conditional model '
        '(config.model.num_classes > 0) needs a dataset with a label '
        'feature, or set config.model.num_classes=0.'
      )
    labels += [int(np.asarray(ex['label'])) for ex in examples]
  return np.asarray(labels, np.int32)


def _read_images(source: sources.Source, split: str) -> np.ndarray:
  """All images of `split` as one uint8 array, read in chunks (batched ArrayRecord reads)."""
  ds = _data_source(source, split)
  num = len(ds)
  if num == 0:
    raise ValueError(f'Split {split!r} of {source.name} is empty.')
  chunks = [
    _read_keys(ds, list(range(start, min(start + _READ_CHUNK, num))), f'{source.name}/{split}')
    for start in range(0, num, _READ_CHUNK)
  ]
  return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


# ------------------------------------------------------------------------- transforming


def _fit_size(images: np.ndarray, image_size: int) -> np.ndarray:
  """Area-downsamples square images to image_size; upsampling would invent data, so errors."""
  num, height, width, channels = images.shape
  if height == width == image_size:
    return images
  if height != width or height < image_size:
    raise ValueError(
      f'config.data.image_size={image_size} does not fit the {height}x{width} '
      'images of this dataset (only square downsampling is supported).'
    )
  factor = height // image_size
  if factor * image_size == height:
    # Exact integer factor: box average in numpy, rounding half up.
    total = images.reshape(num, image_size, factor, image_size, factor, channels).sum(
      axis=(2, 4), dtype=np.uint32
    )
    return ((total + factor * factor // 2) // (factor * factor)).astype(np.uint8)
  resized = [
    np.asarray(
      Image.fromarray(im.squeeze(-1) if channels == 1 else im).resize(
        (image_size, image_size), Image.Resampling.BOX
      )
    )
    for im in images
  ]
  return np.stack(resized).reshape(num, image_size, image_size, channels)


def _is_binary(images: np.ndarray) -> bool:
  return images.size == 0 or int(images.max()) <= 1


def _stream_seed(*parts: int) -> np.random.Generator:
  """A generator for one independent stream, named by non-negative integers."""
  return np.random.default_rng([int(p) % (1 << 63) for p in parts])


def bernoulli_binarize(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Samples x_bin ~ Bernoulli(x / 255) exactly, in integer arithmetic.

  u is uniform on {0, ..., 254}, so P(u < x) = x / 255 for every x in 0..255: 0 stays 0 and
  255 stays 1.
  """
  u = rng.integers(0, 255, size=images.shape, dtype=np.uint8)
  return (u < images).astype(np.uint8)


def _effective_binarization(config: ml_collections.ConfigDict, source: sources.Source) -> str:
  """The binarization that is really applied to grey data, for num_levels == 2."""
  mode = config.data.binarization
  if mode == 'none' and source.fallback_from in sources.PREBINARIZED:
    # binarized_mnist is itself a fixed stochastic binarization; 'static' is its stand-in.
    return 'static'
  return mode


def _binarization_name(config: ml_collections.ConfigDict, source: sources.Source) -> str:
  """A self-describing name for reports."""
  if config.data.num_levels != 2:
    return 'none (256 levels)'
  if source.fallback_from is None and sources.family(source.name) in sources.PREBINARIZED:
    return f'none ({source.name}: fixed stochastic binarization of the dataset)'
  mode = _effective_binarization(config, source)
  return {
    'static': f'static (Bernoulli(x/255) sampled once, seed {config.data.binarization_seed})',
    'dynamic': 'dynamic (Bernoulli(x/255) resampled every batch)',
    'threshold': 'threshold (x > 127; NOT comparable with stochastic binarization)',
    'none': 'none (data already binary)',
  }[mode]


def _to_levels(
  config: ml_collections.ConfigDict, images: np.ndarray, split: str, source: sources.Source
) -> np.ndarray:
  """Grey/colour uint8 -> integer levels 0..num_levels-1 (or grey, for dynamic)."""
  num_levels = config.data.num_levels
  if num_levels == 256:
    return images
  if _is_binary(images):
    return images
  mode = _effective_binarization(config, source)
  if mode == 'static':
    # Seeded by the split name too, so train and validation noise are independent, and
    # every call returns the same binarization.
    rng = _stream_seed(config.data.binarization_seed, zlib.crc32(split.encode()))
    return bernoulli_binarize(images, rng)
  if mode == 'threshold':
    return (images > 127).astype(np.uint8)
  if mode == 'dynamic':
    return images  # train_batches binarizes each batch.
  raise ValueError(
    f"config.data.binarization='none' but {source.name}/{split} is not binary "
    f"(max value {int(images.max())}); use 'static' for stochastically "
    'binarized MNIST.'
  )


def _caveat(source: sources.Source) -> Optional[str]:
  """Why numbers on this data are not comparable with the paper's; None when they are."""
  family = sources.family(source.name)
  if family in NOT_PAPER_IMAGENET:
    return f'{source.name} is {imagenet_manual.NOT_COMPARABLE}'
  if family == 'imagenet_manual':
    return imagenet_manual.caveat(source.builder_kwargs['manual_dir'], source.name)
  return None


# --------------------------------------------------------------------------- streaming


class StreamingSplit:
  """A split that stays on disk: indexing reads just those images, as integer levels.

  Stands in for the uint8 [N, H, W, C] array Dataset.load returns for small splits, as far
  as train_batches, eval_batches and evaluation use one: len(), .shape, .dtype, .ndim, and
  indexing by an int, a slice or an integer array (each a numpy array, read by one batched
  random-access ArrayRecord read). Memory use does not grow with the split size.

  Levels: 256 levels as stored; for num_levels == 2, binarization 'threshold', or 'none' on
  data that is already binary. The seeded 'static' and 'dynamic' binarizations are defined
  on whole in-memory splits and are refused (config.data.streaming=False instead).
  """

  def __init__(self, config: ml_collections.ConfigDict, source: sources.Source, split: str):
    d = config.data
    if d.num_levels == 2 and _effective_binarization(config, source) in ('static', 'dynamic'):
      raise ValueError(
        f'config.data.streaming=True cannot apply binarization '
        f'{d.binarization!r}; use streaming=False (MNIST-size data fits in '
        "memory) or binarization 'threshold'."
      )
    self._config, self._source, self._split = config, source, split
    self._ds = _data_source(source, split)
    if len(self._ds) == 0:
      raise ValueError(f'Split {split!r} of {source.name} is empty.')
    self.shape = (len(self._ds), d.image_size, d.image_size, d.num_channels)
    self.dtype = np.dtype(np.uint8)
    self.ndim = 4
    self[0:1]  # pylint: disable=pointless-statement  # Fail now if the data does not fit.

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, index) -> np.ndarray:
    if isinstance(index, (int, np.integer)):
      return self[np.array([index])][0]
    keys = (
      np.arange(*index.indices(len(self)))
      if isinstance(index, slice)
      else np.asarray(index, dtype=np.int64).ravel()
    )
    if keys.size == 0:
      return np.zeros((0,) + self.shape[1:], np.uint8)
    d, what = self._config.data, f'{self._source.name}/{self._split}'
    images = _read_keys(self._ds, keys.tolist(), what)
    if images.shape[-1] != d.num_channels:
      raise ValueError(
        f'config.data.num_channels={d.num_channels} but {what} has {images.shape[-1]} channels.'
      )
    images = _fit_size(images, d.image_size)
    if d.num_levels == 256:
      return images
    if d.num_levels != 2:
      raise ValueError(f'config.data.num_levels={d.num_levels}; expected 2 or 256.')
    if _effective_binarization(self._config, self._source) == 'threshold':
      return (images > 127).astype(np.uint8)
    if not _is_binary(images):
      raise ValueError(
        f"config.data.binarization='none' but {what} is not binary; use "
        "'threshold' with config.data.streaming=True."
      )
    return images


# ------------------------------------------------------------------------------ public API


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What a run really reads, for logs and reports."""

  name: str  # config.data.name, as requested.
  source: str  # The TFDS dataset read for the train split (differs from name on fallback).
  fallback_reason: Optional[str]  # Why `source` stands in for `name`; None without fallback.
  binarization: str  # A self-describing name (num_levels == 2), e.g. 'static (...)'.
  num_levels: int
  image_shape: tuple[int, int, int]  # (H, W, C) after resizing to config.data.image_size.
  num_examples: dict[str, int]  # Per split (also config.data's slices, e.g. 'train[:98%]').
  data_dir: str
  caveat: Optional[str] = None  # Why numbers on this data are not comparable with the paper's.

  @property
  def fallback(self) -> bool:
    return self.fallback_reason is not None


class Dataset:
  """config.data resolved once: `info`, and `load(split)` for any split of it.

  Made by `open(config)`. Preparing, network probing and the fallback warning all happen
  there, once; `load` only reads.
  """

  def __init__(self, config: ml_collections.ConfigDict, source: sources.Source):
    self.config = config
    self.source = source
    self._split_sources: dict[str, sources.Source] = {}
    num_examples = _num_examples(source)
    for split in (config.data.train_split, config.data.eval_split, config.data.test_split):
      if split in num_examples:
        continue
      try:
        num_examples[split] = len(self.data_source(split))
      except Exception:  # pylint: disable=broad-except
        pass  # A split this dataset does not have; load explains when it is asked for.
    d = config.data
    self.info = DataInfo(
      name=d.name,
      source=source.name,
      fallback_reason=source.fallback_reason,
      binarization=_binarization_name(config, source),
      num_levels=d.num_levels,
      image_shape=(d.image_size, d.image_size, d.num_channels),
      num_examples=num_examples,
      data_dir=source.data_dir or '~/tensorflow_datasets',
      caveat=_caveat(source),
    )

  def source_for(self, split: str) -> sources.Source:
    """The prepared dataset `split` is read from (the fallback's 'test': MNIST IDX files)."""
    if split not in self._split_sources:
      self._split_sources[split] = sources.source_for_split(self.config, self.source, split)
    return self._split_sources[split]

  def data_source(self, split: str):
    """Random access to the raw examples of `split` (len, [i]), without reading it all.

    Examples are as stored ({'image': uint8 [H, W, C], ...}): not resized or binarized.
    """
    return _data_source(self.source_for(split), split)

  def describe(self, split: str) -> str:
    """What `split` is really read from, in words, e.g. 'mnist_idx (idx_dir=/data/mnist)'."""
    return self.source_for(split).describe()

  def load_labels(self, split: str) -> np.ndarray:
    """The class labels of `split`, int32 [N], in the order of load(split).

    Raises:
      ValueError: the dataset has no 'label' feature.
    """
    return _read_labels(self.source_for(split), split)

  def load(self, split: str) -> np.ndarray | StreamingSplit:
    """Loads a split as integer levels, ready for the model.

    Args:
      split: a TFDS split, e.g. config.data.train_split; slices like 'train[:90%]' work.

    Returns:
      uint8 [N, image_size, image_size, num_channels]. For num_levels == 2: values {0, 1},
      except with binarization 'dynamic', where grey 0..255 is returned for train_batches
      to binarize per batch. For num_levels == 256: values 0..255. With
      config.data.streaming=True, a StreamingSplit that reads images only when indexed.

    Raises:
      ValueError: the data does not fit config.data (the message names the field).
    """
    config = self.config
    source = self.source_for(split)
    if config.data.get('streaming', False):
      return StreamingSplit(config, source, split)
    images = _read_images(source, split)
    if images.shape[-1] != config.data.num_channels:
      raise ValueError(
        f'config.data.num_channels={config.data.num_channels} but '
        f'{source.name}/{split} has {images.shape[-1]} channels.'
      )
    images = _fit_size(images, config.data.image_size)
    return _to_levels(config, images, split, source)


def open(config: ml_collections.ConfigDict) -> Dataset:  # pylint: disable=redefined-builtin
  """Resolves config.data once (preparing the dataset if needed) and returns its Dataset.

  The config is assumed valid (pixel_jax.configs.validate: e.g. data.num_levels 2 or 256,
  a known data.binarization); what only the data can tell is checked here.

  Raises:
    DatasetUnavailableError: a catalog dataset cannot be prepared here (and no fallback),
      or an offline dataset lacks its package (the `offline` extra).
    ValueError: config.data names no dataset, or lacks a field it needs.
  """
  return Dataset(config, sources.resolve(config))


def train_batches(
  config: ml_collections.ConfigDict,
  images: np.ndarray | StreamingSplit,
  *,
  seed: int,
  start_step: int = 0,
  batch_size: int,
  rows: slice = slice(None),
  labels: Optional[np.ndarray] = None,
) -> Iterator[np.ndarray | tuple[np.ndarray, np.ndarray]]:
  """Yields training batches forever; batch k depends only on (seed, k).

  Example p = k * batch_size + j of the stream is images[perm_e[p % N]] with e = p // N and
  perm_e a permutation seeded by (seed, e): every epoch visits every image once, batches may
  straddle epochs, and resuming at start_step=k reproduces the uninterrupted run exactly.
  With binarization 'dynamic' (and grey images), batch k is binarized with a stream seeded
  by (seed, k).

  Args:
    config: the experiment config; reads config.data.num_levels and binarization.
    images: uint8 [N, H, W, C] or a StreamingSplit, from Dataset.load.
    seed: the data seed (e.g. config.seed).
    start_step: the first step to produce (the restored step when resuming).
    batch_size: the global batch size.
    rows: the rows of each global batch to produce (sharding.local_slice: this process's
      share); only those images are read. Any split of the rows gives the same images.
    labels: int [N], each image's class (Dataset.load_labels), for a class-conditional
      model: then each batch comes with its images' labels.

  Yields:
    uint8 [rows of batch_size, H, W, C] integer levels; with `labels`, (those images,
    int32 [rows of batch_size] their labels).
  """
  num = len(images)
  if num == 0 or batch_size <= 0:
    raise ValueError(f'Need images and a positive batch size; got {num} and {batch_size}.')
  if labels is not None:
    labels = np.asarray(labels, np.int32)
    if labels.shape != (num,):
      raise ValueError(f'labels have shape {labels.shape}; expected one per image, ({num},).')
  dynamic = False
  if isinstance(images, np.ndarray):  # A StreamingSplit checks each batch it reads.
    dynamic = (
      config.data.num_levels == 2
      and config.data.binarization == 'dynamic'
      and not _is_binary(images)
    )
    if not dynamic and images.size and int(images.max()) >= config.data.num_levels:
      raise ValueError(
        f'images hold values up to {int(images.max())} but '
        f'config.data.num_levels={config.data.num_levels}; use Dataset.load.'
      )
  permutations: dict[int, np.ndarray] = {}

  def permutation(epoch: int) -> np.ndarray:
    if epoch not in permutations:
      if len(permutations) > 2:
        permutations.pop(min(permutations))
      permutations[epoch] = _stream_seed(seed, 0, epoch).permutation(num)
    return permutations[epoch]

  step = start_step
  while True:
    first = step * batch_size
    epoch, offset = divmod(first, num)
    if offset + batch_size <= num:
      index = permutation(epoch)[offset : offset + batch_size]
    else:
      positions = np.arange(first, first + batch_size, dtype=np.int64)
      epochs, offsets = np.divmod(positions, num)
      index = np.empty(batch_size, dtype=np.int64)
      for e in np.unique(epochs):
        here = epochs == e
        index[here] = permutation(int(e))[offsets[here]]
    batch = images[index[rows]]
    if dynamic:
      # Noise for the whole global batch, so any split of its rows sees the same bits.
      u = _stream_seed(seed, 1, step).integers(
        0, 255, size=(batch_size,) + batch.shape[1:], dtype=np.uint8
      )[rows]
      batch = (u < batch).astype(np.uint8)
    yield batch if labels is None else (batch, labels[index[rows]])
    step += 1


def eval_batches(
  images: np.ndarray | StreamingSplit, batch_size: int, rows: slice = slice(None)
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields (batch, mask) covering every image exactly once, in order.

  All batches have the full batch_size, so one compiled eval step serves them all; the last
  batch is padded with zero images whose mask entry is False (exclude them from averages).
  `rows` (sharding.local_slice: this process's share) restricts every batch to those rows
  of it; only they are read.

  Yields:
    (uint8 [rows of batch_size, H, W, C], bool [rows of batch_size]).
  """
  if batch_size <= 0:
    raise ValueError(f'batch_size must be positive, got {batch_size}.')
  num = len(images)
  first, last, _ = rows.indices(batch_size)
  size = last - first
  for start in range(0, num, batch_size):
    batch = images[min(start + first, num) : min(start + last, num)]
    valid = len(batch)
    mask = np.zeros(size, dtype=bool)
    mask[:valid] = True
    if valid < size:
      pad = np.zeros((size - valid,) + images.shape[1:], dtype=images.dtype)
      batch = np.concatenate([batch, pad])
    yield batch, mask
