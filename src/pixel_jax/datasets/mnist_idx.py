"""`mnist_idx`: MNIST read from its original IDX files in a local directory.

Use it for data that is on disk but cannot be downloaded here, e.g. the real MNIST test set:

  builder = tfds.builder('mnist_idx', data_dir=..., idx_dir='/path/to/mnist')
  builder.download_and_prepare(file_format='array_record')
  test = tfds.data_source('mnist_idx', split='test', data_dir=...,
                          builder_kwargs={'idx_dir': '/path/to/mnist',
                                          'file_format': 'array_record'})

The directory may hold train-images-idx3-ubyte + train-labels-idx1-ubyte (split 'train') and/or
t10k-images-idx3-ubyte + t10k-labels-idx1-ubyte (split 'test'), each optionally gzipped ('.gz')
and with '.' instead of '-' before 'idx' (a common re-packaging). Splits are whatever pairs
are present, each stored in file order (MNIST's own files are not sorted by class).

`idx_dir` selects a builder config named after a fingerprint of the directory (absolute path,
file names, sizes and mtimes), so the prepared copy lives in data_dir/mnist_idx/<fingerprint>/
and can never silently go stale when the files or the directory change. Without `idx_dir`
the TFDS manual_dir is used instead (`tfds build --manual_dir=...`, or DownloadConfig(
manual_dir=...)); that copy lives in data_dir/mnist_idx/1.0.0 and is not fingerprinted.
"""

import dataclasses
import gzip
import hashlib
import os
import pathlib
import zlib

import numpy as np
import tensorflow_datasets as tfds

from pixel_jax.datasets import base

IMAGE_MAGIC = 0x00000803  # uint8, 3 dimensions.
LABEL_MAGIC = 0x00000801  # uint8, 1 dimension.
SPLIT_PREFIXES = {'train': 'train', 'test': 't10k'}

_HOW_TO = (
  'Point config.data.idx_dir (tfds builder_kwargs={"idx_dir": ...}) at a folder with '
  'train-/t10k-images-idx3-ubyte[.gz] and the matching *-labels-idx1-ubyte[.gz] '
  '(from http://yann.lecun.com/exdb/mnist/).'
)


class IdxError(ValueError):
  """A missing, incomplete or corrupt IDX directory; the message says what to do."""


def _candidates(prefix: str, kind: str, idx: str) -> list[str]:
  return [f'{prefix}-{kind}{sep}{idx}-ubyte{gz}' for sep in ('-', '.') for gz in ('', '.gz')]


def find_idx_files(idx_dir: os.PathLike | str) -> dict[str, tuple[pathlib.Path, pathlib.Path]]:
  """Maps split name -> (images file, labels file) for the pairs present in `idx_dir`.

  Raises:
    IdxError: the directory is missing, holds no IDX pair, or has images without labels.
  """
  folder = pathlib.Path(idx_dir).expanduser()
  if not str(idx_dir) or not folder.is_dir():
    raise IdxError(f'mnist_idx: directory {str(idx_dir)!r} does not exist. {_HOW_TO}')
  pairs = {}
  for split, prefix in SPLIT_PREFIXES.items():
    images = [folder / n for n in _candidates(prefix, 'images', 'idx3') if (folder / n).is_file()]
    labels = [folder / n for n in _candidates(prefix, 'labels', 'idx1') if (folder / n).is_file()]
    if images and not labels:
      raise IdxError(
        f'mnist_idx: {images[0]} has no matching {prefix}-labels-idx1-ubyte[.gz] '
        f'in {folder}. {_HOW_TO}'
      )
    if images:
      pairs[split] = (images[0], labels[0])
  if not pairs:
    raise IdxError(f'mnist_idx: no IDX files in {folder}. {_HOW_TO}')
  return pairs


def read_idx(path: os.PathLike | str, magic: int) -> np.ndarray:
  """Reads one uint8 IDX file (optionally gzipped), checking its header against its size.

  Raises:
    IdxError: the file is truncated, not gzip when named .gz, or has the wrong header.
  """
  path = pathlib.Path(path)
  fix = f'Replace it with an intact copy. {_HOW_TO}'
  try:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == '.gz' else path.read_bytes()
  except (OSError, EOFError, zlib.error) as e:
    raise IdxError(f'mnist_idx: cannot read {path} ({e}). {fix}') from None
  ndim = magic & 0xFF
  header = 4 + 4 * ndim
  if len(raw) < header or int.from_bytes(raw[:4], 'big') != magic:
    raise IdxError(
      f'mnist_idx: {path} is not an IDX file with magic number {magic:#010x} '
      f'(uint8, {ndim}-D). {fix}'
    )
  dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], 'big') for i in range(ndim))
  if len(raw) != header + int(np.prod(dims)):
    raise IdxError(
      f'mnist_idx: {path} is truncated or corrupt: header says {dims} = '
      f'{int(np.prod(dims))} bytes, file has {len(raw) - header}. {fix}'
    )
  return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_split(
  images_path: pathlib.Path, labels_path: pathlib.Path
) -> tuple[np.ndarray, np.ndarray]:
  """Images uint8 [N, 28, 28, 1] and labels int64 [N] of one split, checked for consistency."""
  images = read_idx(images_path, IMAGE_MAGIC)
  labels = read_idx(labels_path, LABEL_MAGIC).astype(np.int64)
  if images.shape[1:] != (28, 28):
    raise IdxError(f'mnist_idx: {images_path} holds {images.shape[1:]} images, not 28x28.')
  if len(images) != len(labels):
    raise IdxError(
      f'mnist_idx: {images_path} has {len(images)} images but {labels_path} has '
      f'{len(labels)} labels. Replace them with a matching pair.'
    )
  if labels.size and labels.max() > 9:
    raise IdxError(f'mnist_idx: {labels_path} has labels > 9; it is not an MNIST label file.')
  return images[..., None], labels


@dataclasses.dataclass(eq=False)
class IdxConfig(tfds.core.BuilderConfig):
  """Config carrying the source directory, so pickled builders keep it."""

  idx_dir: str = ''


def idx_config(idx_dir: os.PathLike | str) -> IdxConfig:
  """The config for `idx_dir`, named by a fingerprint of its IDX files (see module doc)."""
  pairs = find_idx_files(idx_dir)
  folder = pathlib.Path(idx_dir).expanduser().resolve()
  digest = hashlib.sha1(str(folder).encode())
  for split in sorted(pairs):
    for path in pairs[split]:
      stat = path.stat()
      digest.update(f'{split}:{path.name}:{stat.st_size}:{stat.st_mtime_ns};'.encode())
  return IdxConfig(
    name=f'src_{digest.hexdigest()[:12]}',
    version=MnistIdx.VERSION,
    description=f'MNIST IDX files from {folder}',
    idx_dir=str(folder),
  )


class MnistIdx(base.OfflineBuilder):
  """MNIST from local IDX files: 'train' from train-*, 'test' from t10k-*, in file order."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  IMAGE_SHAPE = (28, 28, 1)
  NUM_CLASSES = 10
  HOMEPAGE = 'http://yann.lecun.com/exdb/mnist/'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _HOW_TO + ' Or put those files in the TFDS manual_dir.'

  def __init__(self, *, idx_dir: os.PathLike | str | None = None, **kwargs):
    if idx_dir and kwargs.get('config') is None:
      kwargs['config'] = idx_config(idx_dir)
    super().__init__(**kwargs)

  @classmethod
  def builder_kwargs(cls, data_config) -> dict[str, str]:
    idx_dir = data_config.get('idx_dir', '')
    if not idx_dir:
      raise ValueError(
        "config.data.name='mnist_idx' needs config.data.idx_dir: a folder with "
        'MNIST IDX files (train-/t10k-images-idx3-ubyte[.gz] and labels).'
      )
    return {'idx_dir': idx_dir}

  def _create_builder_config(self, builder_config, version):
    # A fingerprinted IdxConfig is never in BUILDER_CONFIGS by design; accept it without the
    # "custom data configuration" warning TFDS would log on every construction.
    if isinstance(builder_config, IdxConfig):
      return builder_config
    return super()._create_builder_config(builder_config, version)

  def _split_generators(self, dl_manager):
    config = self.builder_config
    if isinstance(config, IdxConfig) and config.idx_dir:
      idx_dir = config.idx_dir
    else:
      idx_dir = dl_manager.manual_dir
    pairs = find_idx_files(idx_dir)
    # Parse everything before writing anything, so a corrupt file fails fast and cleanly.
    data = {split: read_split(*paths) for split, paths in pairs.items()}
    return {split: self._generate_examples(*arrays) for split, arrays in data.items()}

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
    for i in range(len(images)):
      yield i, {'image': images[i], 'label': int(labels[i])}
