"""Causal masks for autoregressive convolutions (docs/design.md section 2).

Colour groups: the features at every position are split into `num_groups` contiguous
groups (group g <-> colour channel g: R, G, B). Channel k of n belongs to group
k * num_groups // n. A tensor made of `num_blocks` stacked blocks (the four fused LSTM
gates) is grouped per block: channel k of every gate belongs to hidden unit k's group.
The same convention holds for the C x K logits (reshaped to [..., C, K]).
"""

import numpy as np


def channel_groups(num_features: int, num_groups: int, num_blocks: int = 1) -> np.ndarray:
  """Returns the colour group of each of `num_features` channels.

  Args:
    num_features: number of channels.
    num_groups: number of colour groups (1 for grey/binary data, 3 for RGB).
    num_blocks: the channels are `num_blocks` stacked blocks (e.g. 4 LSTM gates) that
      are each grouped the same way.

  Returns:
    int array [num_features] with values in [0, num_groups).
  """
  if num_features % num_blocks:
    raise ValueError(f'{num_features} channels do not split into {num_blocks} blocks.')
  block = num_features // num_blocks
  if block < num_groups:
    raise ValueError(
      f'{block} channels per block cannot hold {num_groups} colour groups; use at least '
      f'{num_groups} features per block.'
    )
  k = np.arange(num_features) % block
  return k * num_groups // block


def conv_mask(
  kernel_size: tuple[int, int],
  in_features: int,
  out_features: int,
  mask_type: str,
  num_groups: int,
  in_blocks: int = 1,
  out_blocks: int = 1,
) -> np.ndarray:
  """Builds the [kh, kw, in, out] 0/1 mask of a causal convolution.

  Information-flow guarantee: output position (r, c) reads input positions in rows above
  r, and positions left of c in row r; at (r, c) itself, output group g reads input group
  g' only if g' < g (mask 'A') or g' <= g (mask 'B'). Nothing right of or below the
  centre is ever read. With one group, mask A drops the centre tap and mask B keeps it.

  Args:
    kernel_size: (kh, kw), any sizes; the centre tap is ((kh - 1) // 2, (kw - 1) // 2), so
      an even kernel reaches one tap further below/right, where the mask is zero anyway.
    in_features: input channels.
    out_features: output channels.
    mask_type: 'A' (first layer: excludes the current sub-pixel) or 'B'.
    num_groups: colour groups.
    in_blocks: the input is this many stacked, equally grouped blocks.
    out_blocks: the output is this many stacked, equally grouped blocks (4 for gates).

  Returns:
    float32 array [kh, kw, in_features, out_features] of zeros and ones.
  """
  kh, kw = kernel_size
  if kh < 1 or kw < 1:
    raise ValueError(f'Kernel sizes must be positive, got {kernel_size}.')
  if mask_type not in ('A', 'B'):
    raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}.")
  a, b = (kh - 1) // 2, (kw - 1) // 2
  mask = np.zeros((kh, kw, in_features, out_features), np.float32)
  mask[:a] = 1.0  # Rows above the centre: all of the past.
  mask[a, :b] = 1.0  # Centre row, left of the centre.
  g_in = channel_groups(in_features, num_groups, in_blocks)[:, None]
  g_out = channel_groups(out_features, num_groups, out_blocks)[None, :]
  allowed = g_in < g_out if mask_type == 'A' else g_in <= g_out
  mask[a, b] = allowed.astype(np.float32)
  return mask
