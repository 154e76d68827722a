"""Sample grids and likelihood heatmaps as PNG files (Pillow only, no matplotlib or
TensorFlow)."""

import io
import math
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from pixel_jax import storage

# The viridis colour map (perceptually uniform, readable in grey and by colour-blind
# readers) at 0, 0.1, ..., 1; colours in between are interpolated linearly.
VIRIDIS = np.array(
  [
    (68, 1, 84),
    (72, 36, 117),
    (65, 68, 135),
    (53, 95, 141),
    (42, 120, 142),
    (33, 145, 140),
    (34, 168, 132),
    (68, 191, 112),
    (122, 209, 81),
    (189, 223, 38),
    (253, 231, 37),
  ],
  np.float32,
)


def make_grid(
  images_NxHxWxC: np.ndarray, num_levels: int, ncols: int = 0, padding: int = 1
) -> np.ndarray:
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
  grid = np.full(
    (nrows * (h + padding) + padding, ncols * (w + padding) + padding, 3), 128, np.uint8
  )
  for i in range(n):
    r, c = divmod(i, ncols)
    top, left = padding + r * (h + padding), padding + c * (w + padding)
    grid[top : top + h, left : left + w] = x[i]
  return grid


def save_png(path: str, array: np.ndarray, scale: int = 1) -> str:
  """Writes a uint8 [H, W, 3] (or [H, W]) array as PNG, creating the directory; returns path.

  `path` may be local or a URI (gs://...); a reader never sees half a file.
  """
  array = np.asarray(array, np.uint8)
  image = Image.fromarray(array)
  if scale > 1:
    image = image.resize((array.shape[1] * scale, array.shape[0] * scale), Image.Resampling.NEAREST)
  png = io.BytesIO()
  image.save(png, format='PNG')
  storage.write_atomic(path, png.getvalue())
  return path


def stages_grid(
  small_NxSxSxC: Any, images_NxHxWxC: Any, num_levels: int, pairs_per_row: int = 0
) -> np.ndarray:
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


def colormap(values: np.ndarray) -> np.ndarray:
  """Values in [0, 1] (clipped) -> uint8 RGB [..., 3] of the viridis colour map."""
  x = np.clip(np.nan_to_num(np.asarray(values, np.float32)), 0.0, 1.0) * (len(VIRIDIS) - 1)
  lo = np.minimum(np.floor(x).astype(np.int32), len(VIRIDIS) - 2)
  frac = (x - lo)[..., None]
  return np.round(VIRIDIS[lo] * (1 - frac) + VIRIDIS[lo + 1] * frac).astype(np.uint8)


def heatmap_panel(
  images_NxHxWxC: np.ndarray,
  maps_NxHxW: np.ndarray,
  num_levels: int,
  vmax: Optional[float] = None,
  captions: Optional[Sequence[str]] = None,
  title: str = 'per-pixel NLL (bits)',
  pairs_per_row: int = 0,
  scale: int = 0,
) -> np.ndarray:
  """Each image beside its heatmap, pairs on a grid, with one colour scale for all of them.

  Args:
    images_NxHxWxC: integer levels in [0, num_levels); C is 1 or 3.
    maps_NxHxW: a non-negative value per pixel (e.g. its NLL in bits), coloured from 0
      (dark violet) to `vmax` (yellow) on the viridis map.
    num_levels: the images' levels (2 or 256).
    vmax: the top of the colour scale; None takes the largest value of the maps.
    captions: one line of text under each pair (e.g. the image's NLL), or None.
    title: the line above the panel.
    pairs_per_row: image-heatmap pairs per row; 0 picks a near-square grid.
    scale: pixel repetition of images and maps; 0 picks ~112 pixels per image side.

  Returns:
    uint8 RGB [H', W', 3] on a white background, the colour scale at the right.
  """
  maps = np.asarray(maps_NxHxW, np.float32)
  images = np.asarray(images_NxHxWxC)
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or maps.shape != images.shape[:3] or not len(images):
    raise ValueError(
      f'heatmap_panel wants images [N, H, W, C] and maps [N, H, W], N > 0; '
      f'got {images.shape} and {maps.shape}.'
    )
  n, h, w, _ = images.shape
  vmax = float(maps.max()) if vmax is None else float(vmax)
  vmax = vmax if vmax > 0 else 1.0
  scale = scale or max(1, 112 // max(h, w))
  ch, cw = h * scale, w * scale
  font = ImageFont.load_default()
  line, pad, gap, bar_w, label_w = 14, 6, 4, 14, 56
  per_row = pairs_per_row or max(1, math.ceil(math.sqrt(n)))
  rows = math.ceil(n / per_row)
  pair_w = 2 * cw + gap + 3 * gap  # A pair, then the space before the next one.
  row_h = ch + (line if captions else 0) + gap
  top = pad + line + gap
  bar_x = pad + per_row * pair_w
  canvas = np.full((top + rows * row_h + pad, bar_x + bar_w + label_w + pad, 3), 255, np.uint8)
  colours = colormap(maps / vmax)
  for i in range(n):
    r, c = divmod(i, per_row)
    y, x = top + r * row_h, pad + c * pair_w
    cell = make_grid(images[i : i + 1], num_levels, ncols=1, padding=0)
    canvas[y : y + ch, x : x + cw] = cell.repeat(scale, 0).repeat(scale, 1)
    canvas[y : y + ch, x + cw + gap : x + 2 * cw + gap] = (
      colours[i].repeat(scale, 0).repeat(scale, 1)
    )
  # The colour scale: a bar from vmax (top) down to 0, with five labelled ticks.
  bar_h = max(ch, rows * row_h - gap)
  canvas[top : top + bar_h, bar_x : bar_x + bar_w] = colormap(np.linspace(1.0, 0.0, bar_h))[
    :, None, :
  ]
  picture = Image.fromarray(canvas)
  draw = ImageDraw.Draw(picture)
  draw.text((pad, pad), title, fill=(0, 0, 0), font=font)
  for k in range(5):
    frac = k / 4
    y = top + round((1 - frac) * (bar_h - 1))
    draw.line([(bar_x + bar_w, y), (bar_x + bar_w + 3, y)], fill=(0, 0, 0))
    text_y = min(max(y - line // 2, top - line // 2), top + bar_h - line)
    draw.text((bar_x + bar_w + 5, text_y), f'{frac * vmax:.3g}', fill=(0, 0, 0), font=font)
  for i, caption in enumerate(captions or ()):
    r, c = divmod(i, per_row)
    draw.text((pad + c * pair_w, top + r * row_h + ch + 1), caption, fill=(0, 0, 0), font=font)
  return np.asarray(picture)
