"""Sample grids as PNG files (Pillow only, no matplotlib or TensorFlow)."""

import math
import os
from typing import Any

import numpy as np
from PIL import Image


def make_grid(images_NxHxWxC: np.ndarray, num_levels: int, ncols: int = 0,
              padding: int = 1) -> np.ndarray:
  """Tiles N images of integer levels into one uint8 RGB grid [rows*(H+p)+p, ..., 3].

  Args:
    images_NxHxWxC: integer levels in [0, num_levels); C is 1 (grey) or 3 (RGB).
    num_levels: 2 for binary images (0/1 -> black/white), 256 for 8-bit.
    ncols: images per row; 0 picks a near-square grid.
    padding: grey pixels between and around the images.

  Returns:
    uint8 [H', W', 3].
  """
  x = np.asarray(images_NxHxWxC)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f'make_grid wants [N, H, W, 1 or 3] images, got shape {x.shape}.')
  n, h, w, _ = x.shape
  x = np.clip(x.astype(np.float32), 0, num_levels - 1) * (255.0 / (num_levels - 1))
  x = np.round(x).astype(np.uint8)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  ncols = ncols or max(1, math.ceil(math.sqrt(n)))
  nrows = max(1, math.ceil(n / ncols))
  grid = np.full((nrows * (h + padding) + padding, ncols * (w + padding) + padding, 3), 128,
                 np.uint8)
  for i in range(n):
    r, c = divmod(i, ncols)
    top, left = padding + r * (h + padding), padding + c * (w + padding)
    grid[top:top + h, left:left + w] = x[i]
  return grid


def save_png(path: str, array: np.ndarray, scale: int = 1) -> str:
  """Writes a uint8 [H, W, 3] (or [H, W]) array as PNG, creating the directory; returns path.

  Written to a temporary name and renamed, so a reader never sees half a file.
  """
  array = np.asarray(array, np.uint8)
  image = Image.fromarray(array)
  if scale > 1:
    image = image.resize((array.shape[1] * scale, array.shape[0] * scale), Image.NEAREST)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.tmp.png'
  image.save(tmp, format='PNG')
  os.replace(tmp, path)
  return path


def stages_grid(small_NxSxSxC: Any, images_NxHxWxC: Any, num_levels: int,
                pairs_per_row: int = 0) -> np.ndarray:
  """A uint8 RGB grid of (small | full) pairs, e.g. the two stages of multi-scale samples.

  Each small image is shown at the full size by pixel repetition, left of its full image;
  `pairs_per_row` 0 picks a near-square grid.
  """
  images, small = np.asarray(images_NxHxWxC), np.asarray(small_NxSxSxC)
  factor = images.shape[1] // small.shape[1]
  small = small.repeat(factor, axis=1).repeat(factor, axis=2)
  pairs = np.stack([small, images], axis=1).reshape(-1, *images.shape[1:])
  per_row = pairs_per_row or max(1, math.ceil(math.sqrt(len(images))))
  return make_grid(pairs, num_levels, ncols=2 * per_row)
