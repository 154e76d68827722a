"""Shape helpers whose whole purpose is a causal guarantee (docs/design.md section 4)."""

import jax
import jax.numpy as jnp


def shift_down(x: jnp.ndarray, axis: int) -> jnp.ndarray:
  """Shifts `x` by one step along `axis`: a zero slice enters at index 0, the last leaves.

  Guarantee: out[i] = x[i - 1], so position i only ever receives what was at an earlier
  position. Used for the Diagonal BiLSTM's right-to-left output (row r gets row r-1) and
  its state-to-state input (the pixel above).
  """
  axis = axis % x.ndim
  pad = [(0, 0)] * x.ndim
  pad[axis] = (1, 0)
  # Slicing, not a gather: its gradient is a pad, not a scatter (slow inside scans).
  return jax.lax.slice_in_dim(jnp.pad(x, pad), 0, x.shape[axis], axis=axis)


def skew(x_HxWxF: jnp.ndarray) -> jnp.ndarray:
  """Shifts row r right by r: S[..., r, r + c, :] = X[..., r, c, :], zeros elsewhere.

  Input [..., H, W, F], output [..., H, W + H - 1, F]. Column t of S holds the image
  diagonal r + c = t, so one scan step over t processes a whole diagonal, and the pixel
  above (r-1, c) and the pixel to the left (r, c-1) of (r, c) both sit in column t - 1.
  """
  *lead, h, w, f = x_HxWxF.shape
  x = jnp.pad(x_HxWxF, [(0, 0)] * len(lead) + [(0, 0), (0, h), (0, 0)])
  x = x.reshape(*lead, h * (w + h), f)[..., : h * (w + h - 1), :]
  return x.reshape(*lead, h, w + h - 1, f)


def unskew(s_HxLxF: jnp.ndarray, width: int) -> jnp.ndarray:
  """Inverse of `skew`: Y[..., r, c, :] = S[..., r, r + c, :] for c < width."""
  *lead, h, length, f = s_HxLxF.shape
  if length != width + h - 1:
    raise ValueError(f'Skewed width {length} does not match width {width} and height {h}.')
  s = s_HxLxF.reshape(*lead, h * length, f)
  s = jnp.pad(s, [(0, 0)] * len(lead) + [(0, h), (0, 0)])
  return s.reshape(*lead, h, length + 1, f)[..., :width, :]
