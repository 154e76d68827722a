"""`imagenet_manual`: downsampled ImageNet 32x32 / 64x64 from files the user supplies.

The paper's ImageNet numbers (3.86 bits/dim at 32x32, 3.63 at 64x64) are on the downsampled
ImageNet its authors released (van den Oord et al. 2016, image-net.org/small). Its download is
gone upstream, so this builder reads the files from a local folder, the TFDS `manual_dir`
(config.data.manual_dir; `tfds build imagenet_manual/32x32 --manual_dir=DIR`). Two layouts:

- 'original': the paper authors' release, `train_32x32.tar` and `valid_32x32.tar` (tar files
  of PNGs; `_64x64` likewise), or the same extracted into folders `train_32x32/`,
  `valid_32x32/`. Numbers on it are comparable with the paper's.
- 'npz': the widely mirrored batches of Chrabaszcz et al. 2017 (`Imagenet32_train_npz/
  train_data_batch_1.npz` ... `_10`, `Imagenet32_val_npz/val_data.npz`; for 64x64 the train
  batches come in two folders, `Imagenet64_train_part1_npz/` and `..._part2_npz/`), each with a
  `data` array of flattened channel-first uint8 rows. The files may also sit directly in the
  folder. This is a DIFFERENT resize of ImageNet (box filter from other source images):
  numbers on it are NOT comparable with the paper's, and every run that reads it says so.

When both are present the original release is used. Splits: 'train' and 'validation' (the
paper reports on validation). Like every base.OfflineBuilder, images are stored as uint8
tensors, so preparing and reading need no TensorFlow. Examples are streamed from the files
one at a time (a 64x64 npz batch is 1.5 GB decoded), and their keys are 128-bit hashes of
their names: TFDS spreads them evenly over its on-disk sort buckets, so preparing 1.2M
images never holds a split in memory, and the stored order is a fixed pseudo-random one
(a prefix, e.g. eval.max_examples, is a fair sample).

`manual_dir` given as a builder argument selects a builder config named after the image size,
the layout and a fingerprint of the files (absolute paths, sizes, modification times), so the
prepared copy lives in data_dir/imagenet_manual/<config>/ and never silently goes stale when
the files change. Corrupt or truncated files fail with one line naming the file.
"""

import dataclasses
import hashlib
import io
import os
import pathlib
import re
import tarfile
from typing import Any, Iterator, Optional
import zipfile
import zlib

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from pixel_jax.datasets import base

SIZES = (32, 64)
ORIGINAL, NPZ = 'original', 'npz'
NOT_COMPARABLE = (
  "a different resize of ImageNet than the paper's (Chrabaszcz et al. 2017); "
  "bits/dim on it are NOT comparable with the paper's numbers"
)
_ROWS_PER_READ = 1024


class ImagenetManualError(ValueError):
  """Missing, incomplete or corrupt manual files; the message says what to do."""


def expected_files(size: int) -> str:
  """The file names this builder looks for, as one sentence for error messages."""
  s = f'{size}x{size}'
  return (
    f'train_{s}.tar + valid_{s}.tar (or folders train_{s}/ + valid_{s}/), or '
    f'Imagenet{size}_train_npz/train_data_batch_N.npz + Imagenet{size}_val_npz/val_data.npz'
  )


@dataclasses.dataclass(frozen=True)
class ManualFiles:
  """Where the two splits of one image size are, in one of the two layouts."""

  layout: str  # ORIGINAL or NPZ.
  size: int
  train: tuple[pathlib.Path, ...]  # One tar or folder (ORIGINAL); the batches (NPZ).
  validation: tuple[pathlib.Path, ...]


def _batch_number(path: pathlib.Path) -> int:
  match = re.search(r'(\d+)\.npz$', path.name)
  return int(match.group(1)) if match else 0


def find_files(manual_dir: os.PathLike | str, size: int) -> ManualFiles:
  """Finds the files of `size` in `manual_dir`, preferring the original release.

  Raises:
    ImagenetManualError: the folder is missing or holds neither layout completely.
  """
  if size not in SIZES:
    raise ImagenetManualError(f'imagenet_manual: image size {size} is not one of {SIZES}.')
  folder = pathlib.Path(manual_dir).expanduser()
  where = f'Put {expected_files(size)} in {folder} (config.data.manual_dir).'
  if not str(manual_dir):
    raise ImagenetManualError(
      'imagenet_manual: config.data.manual_dir is not set. Point it at '
      f'a folder holding {expected_files(size)}.'
    )
  if not folder.is_dir():
    raise ImagenetManualError(f'imagenet_manual: folder {folder} does not exist. {where}')
  s = f'{size}x{size}'

  def original(prefix: str) -> pathlib.Path | None:
    for candidate in (folder / f'{prefix}_{s}.tar', folder / f'{prefix}_{s}'):
      if candidate.is_file() or candidate.is_dir():
        return candidate
    return None

  train, valid = original('train'), original('valid')
  if train and valid:
    return ManualFiles(ORIGINAL, size, (train,), (valid,))
  batches = sorted(
    {
      p
      for pattern in ('train_data_batch_*.npz', f'Imagenet{size}_train*/train_data_batch_*.npz')
      for p in folder.glob(pattern)
    },
    key=lambda p: (_batch_number(p), str(p)),
  )
  vals = sorted(
    {
      p
      for pattern in ('val_data.npz', f'Imagenet{size}_val*/val_data.npz')
      for p in folder.glob(pattern)
    }
  )
  for found in (batches, vals):
    names = [p.name for p in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
      copies = ' and '.join(str(p.parent) for p in found if p.name == twice[0])
      raise ImagenetManualError(
        f'imagenet_manual: {twice[0]} is in both {copies}; keep one '
        'copy (each image must be read once).'
      )
  if batches and vals:
    return ManualFiles(NPZ, size, tuple(batches), (vals[0],))
  if train or valid:
    have, lack = (train, f'valid_{s}.tar') if train else (valid, f'train_{s}.tar')
    raise ImagenetManualError(
      f'imagenet_manual: {have} is there but {lack} (or its '
      f'extracted folder) is missing in {folder}. {where}'
    )
  if batches or vals:
    lack = 'val_data.npz' if batches else 'train_data_batch_N.npz'
    raise ImagenetManualError(
      f'imagenet_manual: npz batches found but {lack} is missing in {folder}. {where}'
    )
  raise ImagenetManualError(f'imagenet_manual: no {s} ImageNet files in {folder}. {where}')


def _corrupt(path: os.PathLike | str, error: BaseException, size: int) -> ImagenetManualError:
  reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  return ImagenetManualError(
    f'imagenet_manual: {path} is truncated or corrupt ({reason}); '
    f'replace it with an intact copy ({expected_files(size)}).'
  )


def decode_png(data: bytes, size: int, name: str) -> np.ndarray:
  """One PNG of the original release -> uint8 [size, size, 3]."""
  with Image.open(io.BytesIO(data)) as image:
    pixels = np.asarray(image.convert('RGB'))
  if pixels.shape != (size, size, 3):
    raise ValueError(f'{name} is {pixels.shape[1]}x{pixels.shape[0]}, not {size}x{size}')
  return pixels


def iter_original(path: pathlib.Path, size: int) -> Iterator[tuple[str, np.ndarray]]:
  """(key, image) for every PNG in a tar file (streamed) or a folder (sorted).

  Raises:
    ImagenetManualError: a truncated tar or an unreadable or wrong-size PNG.
  """
  if path.is_dir():
    for root, dirs, files in os.walk(path):
      dirs.sort()
      for name in sorted(files):
        if not name.lower().endswith('.png'):
          continue
        file = pathlib.Path(root) / name
        try:
          yield str(file.relative_to(path)), decode_png(file.read_bytes(), size, name)
        except (OSError, ValueError) as e:
          raise _corrupt(file, e, size) from None
    return
  try:
    with tarfile.open(path, 'r|*') as tar:  # Streaming: members in archive order.
      for member in tar:
        if member.isfile() and member.name.lower().endswith('.png'):
          data = tar.extractfile(member)  # Not None: a regular file.
          if data is not None:
            yield member.name, decode_png(data.read(), size, member.name)
  except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as e:
    raise _corrupt(path, e, size) from None


def iter_npz(path: pathlib.Path, size: int) -> Iterator[tuple[str, np.ndarray]]:
  """(key, image) for every row of one npz batch, read _ROWS_PER_READ rows at a time.

  Rows are flattened channel-first (all R, then all G, then all B, each row-major).

  Raises:
    ImagenetManualError: not a zip, no `data` array, wrong row length, or truncated data.
  """
  row_bytes = 3 * size * size
  try:
    with zipfile.ZipFile(path) as archive, archive.open('data.npy') as f:
      version = np.lib.format.read_magic(f)
      read_header = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
      )
      shape, fortran_order, dtype = read_header(f)
      if len(shape) != 2 or shape[1] != row_bytes or dtype != np.uint8 or fortran_order:
        raise ImagenetManualError(
          f'imagenet_manual: {path} holds data {dtype} {shape}, not uint8 rows of '
          f'3*{size}*{size} = {row_bytes} values: it is not a {size}x{size} npz batch.'
        )
      for start in range(0, shape[0], _ROWS_PER_READ):
        rows = min(_ROWS_PER_READ, shape[0] - start)
        raw = f.read(rows * row_bytes)
        if len(raw) != rows * row_bytes:
          raise EOFError(f'data ends after {start + len(raw) // row_bytes} of {shape[0]} rows')
        images = np.frombuffer(raw, np.uint8).reshape(rows, 3, size, size)
        for i, image in enumerate(images.transpose(0, 2, 3, 1)):
          yield f'{path.name}:{start + i:07d}', np.ascontiguousarray(image)
  except ImagenetManualError:
    raise
  except KeyError:
    raise ImagenetManualError(
      f'imagenet_manual: {path} has no `data` array; it is not an '
      f'ImageNet npz batch. Put {expected_files(size)} in '
      f'{path.parent}.'
    ) from None
  except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as e:
    raise _corrupt(path, e, size) from None


def iter_images(files: ManualFiles, split: str) -> Iterator[tuple[str, np.ndarray]]:
  """(key, uint8 [size, size, 3]) for every image of `split` ('train' or 'validation')."""
  for path in getattr(files, split):
    if files.layout == ORIGINAL:
      yield from iter_original(path, files.size)
    else:
      yield from iter_npz(path, files.size)


@dataclasses.dataclass(eq=False)
class ImagenetManualConfig(tfds.core.BuilderConfig):
  """Image size, plus (when fingerprinted) the layout and folder the files are in."""

  image_size: int = 32
  layout: str = ''  # ORIGINAL or NPZ; '' until the files are found.
  manual_dir: str = ''


def _fingerprint(files: ManualFiles) -> str:
  digest = hashlib.sha1(files.layout.encode())
  for path in files.train + files.validation:
    stat = path.resolve().stat()  # A folder's mtime changes when files are added/removed.
    digest.update(f'{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns};'.encode())
  return digest.hexdigest()[:12]


def source_config(manual_dir: os.PathLike | str, size: int) -> ImagenetManualConfig:
  """The config for the files of `size` in `manual_dir` (see the module docstring)."""
  files = find_files(manual_dir, size)
  folder = pathlib.Path(manual_dir).expanduser().resolve()
  return ImagenetManualConfig(
    name=f'{size}x{size}_{files.layout}_{_fingerprint(files)}',
    version=ImagenetManual.VERSION,
    image_size=size,
    layout=files.layout,
    manual_dir=str(folder),
    description=f'Downsampled ImageNet {size}x{size}, {files.layout} layout, from {folder}',
  )


def size_of(config) -> int:
  """The image size of a config, config name or dataset name ('imagenet_manual/64x64')."""
  if isinstance(config, ImagenetManualConfig):
    return config.image_size
  name = str(config or f'{SIZES[0]}x{SIZES[0]}').split(':')[0]
  if name.startswith('imagenet_manual'):
    name = name.split('/')[1] if '/' in name else f'{SIZES[0]}x{SIZES[0]}'
  match = re.fullmatch(r'(\d+)x\1', name)
  if not match or int(match.group(1)) not in SIZES:
    raise ImagenetManualError(
      f'imagenet_manual: config {config!r} is not one of '
      f'{[f"{s}x{s}" for s in SIZES]} (e.g. imagenet_manual/32x32).'
    )
  return int(match.group(1))


def caveat(manual_dir: os.PathLike | str, name: str) -> Optional[str]:
  """Why numbers on the files of dataset `name` in `manual_dir` are not the paper's, or None."""
  if find_files(manual_dir, size_of(name)).layout == NPZ:
    return f'the npz batches in {manual_dir} are {NOT_COMPARABLE}'
  return None


def example_key(name: str) -> int:
  """A 128-bit key from an example's name: evenly spread, so TFDS sorts on disk."""
  return int.from_bytes(hashlib.md5(name.encode()).digest(), 'big')


class ImagenetManual(base.OfflineBuilder):
  """Downsampled ImageNet from local files: 'train' and 'validation'."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [ImagenetManualConfig(name=f'{s}x{s}', image_size=s) for s in SIZES]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f'Put {expected_files(32)} (or the 64x64 equivalents) in the manual_dir.'
  )
  HOMEPAGE = 'https://image-net.org/download-images.php'

  @property  # Per builder config (32x32 or 64x64), where OfflineBuilder has a class constant.
  def IMAGE_SHAPE(self) -> tuple[int, int, int]:  # type: ignore[override]  # pylint: disable=invalid-name
    size = self.builder_config.image_size
    return (size, size, 3)

  @classmethod
  def builder_kwargs(cls, data_config: Any) -> dict[str, Any]:
    # Checked here, where the error stays one line (TFDS wraps constructor errors).
    find_files(data_config.manual_dir, size_of(data_config.name))
    return {'manual_dir': data_config.manual_dir}

  def __init__(self, *, manual_dir: os.PathLike | str | None = None, **kwargs):
    if manual_dir:
      kwargs['config'] = source_config(manual_dir, size_of(kwargs.get('config')))
    super().__init__(**kwargs)

  def _create_builder_config(self, builder_config, version):
    # A fingerprinted config is never in BUILDER_CONFIGS by design; accept it without the
    # "custom data configuration" warning TFDS would log on every construction.
    if isinstance(builder_config, ImagenetManualConfig) and builder_config.layout:
      return builder_config
    return super()._create_builder_config(builder_config, version)

  def _split_generators(self, dl_manager):
    config = self.builder_config
    manual_dir = config.manual_dir or dl_manager.manual_dir
    files = find_files(manual_dir, config.image_size)
    return {split: self._generate_examples(files, split) for split in ('train', 'validation')}

  def _generate_examples(self, files: ManualFiles, split: str):
    for name, image in iter_images(files, split):
      yield example_key(f'{split}/{name}'), {'image': image}
