"""Images a user gives a trained model: a folder of PNG files or a .npy array of levels.

Both become uint8 levels [N, H, W, C] for the model's data shape (config.data.image_size,
num_channels, num_levels), or one ImageFileError line saying what is wrong and what to do.
Nothing is resized, binarized or converted silently:

* A PNG holds 8-bit values v in [0, 255]; a model of K levels reads v * (K - 1) / 255, so
  K = 256 takes every value and K = 2 takes black and white (0 and 255: the sample grids'
  convention). Grey PNGs feed one-channel models, RGB PNGs three-channel ones; an RGB
  (or palette) PNG whose three channels are equal also feeds a one-channel model.
* A .npy file holds integer levels [N, H, W, C] (or [N, H, W] for one channel) in
  [0, K); float arrays are refused, since their scale (0-1? 0-255?) is a guess.
* `binarize=True` thresholds 8-bit grey values (v >= 128 -> 1) for a two-level model.

A folder or file may be local or in cloud storage (gs://bucket/images.npy, any URI that
storage.path accepts): every read goes through storage, and one that fails (no such path,
no permission, no credentials) is one ImageFileError line naming the path.
"""

import contextlib
import io
import os
from typing import Iterator

import ml_collections
import numpy as np
from PIL import Image

from pixel_jax import storage


class ImageFileError(ValueError):
  """Images that do not fit the model; the message says which and what to do."""


def _missing(source: str) -> ImageFileError:
  return ImageFileError(f'{source} does not exist; give a folder of PNG files or a .npy file.')


@contextlib.contextmanager
def _reading(source: str) -> Iterator[None]:
  """Turns a failed read of `source` (a file or a folder) into one ImageFileError line."""
  try:
    yield
  except FileNotFoundError:
    raise _missing(source) from None
  except ImageFileError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    message = storage.read_error_text(e, source)
    if message is None:
      raise
    raise ImageFileError(message) from e


def _read_bytes(path: str) -> bytes:
  with _reading(path):
    return storage.path(path).read_bytes()


def names_image_files(source: str) -> bool:
  """Whether `source` names image files (a .npy file, a path with a folder in it, an
  existing folder, or any URI such as gs://...) rather than a dataset split."""
  if source.endswith('.npy') or os.sep in source or storage.is_uri(source):
    return True
  with _reading(source):
    return storage.path(source).is_dir()


def _png_values(path: str) -> np.ndarray:
  """The 8-bit values of one PNG file, uint8 [H, W, 1 or 3]."""
  data = _read_bytes(path)
  try:
    with Image.open(io.BytesIO(data)) as image:
      mode = image.mode
      if mode not in ('1', 'L', 'P', 'RGB', 'RGBA', 'LA'):
        raise ImageFileError(f'{path} is a {mode} image; save it as an 8-bit grey or RGB PNG.')
      if mode in ('RGBA', 'LA') and np.asarray(image.getchannel('A')).min() < 255:
        raise ImageFileError(f'{path} has transparent pixels; save it without alpha.')
      values = np.asarray(image.convert('L' if mode in ('1', 'L', 'LA') else 'RGB'), np.uint8)
  except (OSError, SyntaxError) as e:
    raise ImageFileError(f'{path} is not a readable PNG file ({e}).') from None
  return values[..., None] if values.ndim == 2 else values


def _fit_channels(values_HxWxC: np.ndarray, num_channels: int, what: str) -> np.ndarray:
  """Grey (C = 1) or RGB (C = 3) values for a model of `num_channels`."""
  c = values_HxWxC.shape[-1]
  if c == num_channels:
    return values_HxWxC
  if num_channels == 1 and c == 3:
    if (values_HxWxC == values_HxWxC[..., :1]).all():
      return values_HxWxC[..., :1]
    raise ImageFileError(
      f'{what} is a colour image; the model reads grey images (1 channel). Give grey images.'
    )
  raise ImageFileError(
    f'{what} is a grey image; the model reads RGB images (3 channels). Give RGB images.'
  )


def _to_levels(
  values: np.ndarray, num_levels: int, binarize: bool, what: str, eight_bit: bool
) -> np.ndarray:
  """Integer values -> levels in [0, num_levels): 8-bit PNG values are rescaled."""
  if binarize:
    if num_levels != 2:
      raise ImageFileError(
        f'binarize applies to two-level models; this one has {num_levels} levels.'
      )
    if values.min() < 0 or values.max() > 255:
      raise ImageFileError(
        f'{what} holds values in [{values.min()}, {values.max()}]; '
        'binarize wants 8-bit grey values in [0, 255].'
      )
    return (values >= 128).astype(np.uint8)
  if eight_bit and num_levels != 256:
    step = 255 // (num_levels - 1)
    if 255 % (num_levels - 1) or (values % step).any():
      raise ImageFileError(
        f'{what} holds 8-bit values other than the {num_levels} levels the model reads '
        f'(multiples of {step}: black and white for a binary model); binarize them first '
        '(--binarize thresholds at 128).'
      )
    values = values // step
  if values.min() < 0 or values.max() >= num_levels:
    raise ImageFileError(
      f'{what} holds levels in [{values.min()}, {values.max()}]; the '
      f'model reads levels in [0, {num_levels - 1}]'
      + (
        ' (--binarize thresholds 8-bit grey values at 128).'
        if num_levels == 2 and values.max() < 256
        else '.'
      )
    )
  return values.astype(np.uint8)


def load_png_folder(
  folder: str, config: ml_collections.ConfigDict, binarize: bool = False
) -> tuple[np.ndarray, list[str]]:
  """Every *.png of `folder` (sorted by name) as levels [N, H, W, C], and the file names."""
  d = config.data
  with _reading(folder):
    names = sorted(
      p.name for p in storage.path(folder).iterdir() if p.name.lower().endswith('.png')
    )
  if not names:
    raise ImageFileError(f'{folder} holds no .png files.')
  images = []
  for name in names:
    path = os.path.join(folder, name)
    values = _png_values(path)
    if values.shape[:2] != (d.image_size, d.image_size):
      raise ImageFileError(
        f'{path} is {values.shape[1]}x{values.shape[0]} pixels; the model '
        f'reads {d.image_size}x{d.image_size}. Resize it first.'
      )
    values = _fit_channels(values, d.num_channels, path)
    images.append(_to_levels(values, d.num_levels, binarize, path, eight_bit=True))
  return np.stack(images), names


def load_npy(
  path: str, config: ml_collections.ConfigDict, binarize: bool = False
) -> tuple[np.ndarray, list[str]]:
  """A .npy of integer levels [N, H, W, C] (or [N, H, W]) as uint8 levels, and the names
  'FILE[i]' of its images."""
  d = config.data
  data = _read_bytes(path)
  try:
    array = np.load(io.BytesIO(data), allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    raise ImageFileError(f'{path} is not a readable .npy file ({e}).') from None
  if array.dtype == bool:
    array = array.astype(np.uint8)
  if not np.issubdtype(array.dtype, np.integer):
    raise ImageFileError(
      f'{path} holds {array.dtype} values; give integer levels in [0, '
      f'{d.num_levels - 1}] (e.g. np.uint8).'
    )
  if array.ndim == 3:
    array = array[..., None]
  expected = (d.image_size, d.image_size, d.num_channels)
  if array.ndim != 4 or tuple(array.shape[1:]) != expected:
    raise ImageFileError(
      f'{path} holds an array of shape {array.shape}; the model reads '
      f'[N, {", ".join(map(str, expected))}]'
      + (' (or [N, H, W] for one channel).' if d.num_channels == 1 else '.')
    )
  if len(array) == 0:
    raise ImageFileError(f'{path} holds no images.')
  base = os.path.basename(path)
  images = _to_levels(array, d.num_levels, binarize, path, eight_bit=False)
  return images, [f'{base}[{i}]' for i in range(len(images))]


def load_images(
  source: str, config: ml_collections.ConfigDict, binarize: bool = False
) -> tuple[np.ndarray, list[str]]:
  """A folder of PNGs or a .npy file as uint8 levels [N, H, W, C], and a name per image.

  `source` may be local or a URI (gs://...).

  Raises:
    ImageFileError: no such path, one that cannot be read, an empty folder, or images that
      do not fit the model.
  """
  with _reading(source):
    found = storage.path(source)
    is_dir = found.is_dir()
    exists = is_dir or found.exists()
  if is_dir:
    return load_png_folder(source, config, binarize)
  if not exists:
    raise _missing(source)
  if source.endswith('.npy'):
    return load_npy(source, config, binarize)
  raise ImageFileError(f'{source} is neither a folder of PNG files nor a .npy file.')
