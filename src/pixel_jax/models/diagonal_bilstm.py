"""Diagonal BiLSTM layer: skew, a scan over diagonals, unskew; and the same layer one
position at a time for the cached sampler.

Full image (`DiagonalBiLSTM.__call__`): both directions run in the same scan: the
right-to-left direction is the same layer applied to the mirrored image with its own
weights, stacked on a leading direction axis, so a layer costs W + H - 1 sequential steps
rather than twice that. The skewed columns are scanned in ~4 chunks, each over the band of
rows that can hold real pixels in it (band_chunks): about half the skewed map is padding.

One position (the cached sampler's interface, see models/cores.py): in the left-to-right
direction the state at (r, c) reads h above (r-1, c) and (h, c) to the left (r, c-1); left
of column 0 it is the learned initial state (the full form holds the skewed padding
there). The right-to-left output at (r, c) only enters row r + 1 (combine_directions), so
once row r is finished that direction is run over the row (`end_row`), W sequential steps.
Both forms run `diagonal_step` on the states a position reads.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from pixel_jax.models import causal
from pixel_jax.models import layers

Cache = dict[str, jnp.ndarray]
DIRECTIONS = ('fwd', 'bwd')


def diagonal_step(
  kernel_2hx4h: jnp.ndarray,
  h_above_Nxh: jnp.ndarray,
  h_left_Nxh: jnp.ndarray,
  c_left_Nxh: jnp.ndarray,
  gates_is_Nx4h: jnp.ndarray,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(h, c) at a position (or a whole skewed column) from the h above it and the (h, c)
  to its left; the kernel's first h rows read "above", the last h "left"."""
  neighbours = jnp.concatenate([h_above_Nxh, h_left_Nxh], axis=-1)
  return layers.lstm_step(kernel_2hx4h, neighbours, gates_is_Nx4h, c_left_Nxh)


def column_step(
  kernel_Dx2hx4h: jnp.ndarray,
  carry: tuple[jnp.ndarray, jnp.ndarray],
  gates_is_DxBxHx4h: jnp.ndarray,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """One skewed column (one diagonal per direction) of the recurrence.

  Skewed (r, t) reads h at (r-1, t-1) and (r, t-1): the pixel above and the pixel to the
  left of (r, t - r). ONE ZERO ROW IS PADDED ON TOP (shift_down) for "above"; 'SAME'
  padding of an even kernel would pad at the bottom and read the pixel below, a future
  pixel.
  """
  h_prev, c_prev = carry
  return diagonal_step(
    kernel_Dx2hx4h[:, None], causal.shift_down(h_prev, axis=2), h_prev, c_prev, gates_is_DxBxHx4h
  )


def hold_left_of_image(
  t: jnp.ndarray,
  rows: jnp.ndarray,
  new: tuple[jnp.ndarray, jnp.ndarray],
  init: tuple[jnp.ndarray, jnp.ndarray],
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The state of skewed column t after `column_step`, with the cells left of the image
  (rows > t) held at the learned initial state `init`, so pixel (r, 0) starts from it
  exactly like a plain LSTM would. `rows` broadcasts against the states' row axis."""
  return jnp.where(rows > t, init[0], new[0]), jnp.where(rows > t, init[1], new[1])


def band_chunks(length: int, height: int, width: int) -> list[tuple[int, int, int, int]]:
  """(t0, t1, lo, hi): the skewed columns [t0, t1) scanned over the rows [lo, hi) only.

  Column t holds real pixels in rows max(0, t - W + 1)..min(t, H - 1); the rest of the
  column is padding, about half of the skewed map. Rows >= t1 are left of the image for
  the whole chunk (held at the initial state, nothing to compute); rows < t0 - W are right
  of it (finished: no real pixel reads them again). Row t0 - W is kept as the "above"
  neighbour of the chunk's first real row. Chunks of ~H/2 columns (~4 chunks for a square
  image) skip ~25% of the cells; ~H/4 (8 chunks) skipped ~37% but ran no faster within
  noise and doubled the compile time (one scan per chunk per layer).
  """
  chunk = max(4, -(-height // 2))
  return [
    (t0, min(t0 + chunk, length), max(0, t0 - width), min(height, t0 + chunk))
    for t0 in range(0, length, chunk)
  ]


def banded_scan(
  kernel_Dx2hx4h: jnp.ndarray,
  columns_Lx2xBxHx4h: jnp.ndarray,
  init: tuple[jnp.ndarray, jnp.ndarray],
  width: int,
) -> jnp.ndarray:
  """The recurrence over every skewed column, each chunk of columns scanned over the band
  of rows that can hold real pixels (band_chunks): [L, 2, B, H, h] hidden states, exact at
  every real pixel (padding cells hold unused values)."""
  length, height = columns_Lx2xBxHx4h.shape[0], columns_Lx2xBxHx4h.shape[3]
  outputs, carry, carry_lo, carry_hi = [], init, 0, height  # The carry's rows.
  for t0, t1, lo, hi in band_chunks(length, height, width):
    # The band's state: its rows of the last carry, then rows entering from the left
    # padding (still at the initial state).
    band_h, band_c = (
      jnp.concatenate(
        [c[:, :, lo - carry_lo : min(hi, carry_hi) - carry_lo], s0[:, :, max(carry_hi, lo) : hi]],
        axis=2,
      )
      for c, s0 in zip(carry, init)
    )
    band = (band_h, band_c)
    band_init = tuple(s0[:, :, lo:hi] for s0 in init)
    rows = jnp.arange(lo, hi)[None, None, :, None]

    def step(carry, column, band_init=band_init, rows=rows):
      t, gates_col = column
      h, c = hold_left_of_image(t, rows, column_step(kernel_Dx2hx4h, carry, gates_col), band_init)
      return (h, c), h

    carry, h = jax.lax.scan(
      step, band, (jnp.arange(t0, t1), columns_Lx2xBxHx4h[t0:t1, :, :, lo:hi])
    )
    carry_lo, carry_hi = lo, hi
    outputs.append(jnp.pad(h, ((0, 0), (0, 0), (0, 0), (lo, height - hi), (0, 0))))
  return jnp.concatenate(outputs)


def combine_directions(
  h_fwd_BxHxWxh: jnp.ndarray, h_bwd_mirrored_BxHxWxh: jnp.ndarray
) -> jnp.ndarray:
  """Adds the right-to-left output, mirrored back and SHIFTED DOWN ONE ROW, to the forward.

  The right-to-left state at (r, c) has read row r from column c to the right end,
  including the future; moved to (r + 1, c) it only holds rows <= r, all in the past.
  """
  h_bwd = jnp.flip(h_bwd_mirrored_BxHxWxh, axis=2)
  return h_fwd_BxHxWxh + causal.shift_down(h_bwd, axis=1)


def _read(buffer_NxWxF: jnp.ndarray, c: jnp.ndarray) -> jnp.ndarray:
  """buffer[:, c] for a traced column c: [N, F]."""
  return jax.lax.dynamic_index_in_dim(buffer_NxWxF, c, axis=1, keepdims=False)


def _write(buffer_NxWxF: jnp.ndarray, c: jnp.ndarray, value_NxF: jnp.ndarray) -> jnp.ndarray:
  """buffer[:, c] = value, in place inside the sampling loop."""
  zero = jnp.zeros((), jnp.int32)
  update = value_NxF.astype(buffer_NxWxF.dtype)[:, None, :]
  return jax.lax.dynamic_update_slice(buffer_NxWxF, update, (zero, c, zero))


class DiagonalBiLSTM(nn.Module):
  """Diagonal BiLSTM: [B, H, W, F] -> [B, H, W, hidden].

  Input-to-state: a 1x1 mask-B convolution per direction (it commutes with the skew).
  `cond_BxHxWxD`, when given, adds an unmasked 1x1 convolution of it (layers.ConditionBias)
  to each direction's input-to-state pre-activations (a class, the Multi-Scale PixelRNN's
  small image).
  """

  hidden: int
  num_groups: int = 1
  dtype: Any = jnp.float32

  def setup(self):
    h = self.hidden
    # Per direction, 'fwd' (left to right) and 'bwd' (right to left, on the mirrored image).
    self.input_to_state = {
      name: layers.MaskedConv2D(4 * h, (1, 1), 'B', self.num_groups, out_blocks=4, dtype=self.dtype)
      for name in DIRECTIONS
    }
    self.cond_to_state = {
      name: layers.ConditionBias(4 * h, dtype=self.dtype) for name in DIRECTIONS
    }
    self.state_to_state = self.param(
      'state_to_state', nn.initializers.lecun_normal(batch_axis=(0,)), (2, 2 * h, 4 * h)
    )
    self.initial_h = self.param('initial_h', nn.initializers.zeros, (2, h))
    self.initial_c = self.param('initial_c', nn.initializers.zeros, (2, h))

  def gates(
    self, direction: str, x_NxF: jnp.ndarray, cond_NxD: Optional[jnp.ndarray]
  ) -> jnp.ndarray:
    """One direction's input-to-state pre-activations (1x1: any [..., F])."""
    gates = self.input_to_state[direction](x_NxF)
    return self.cond_to_state[direction](gates, cond_NxD)

  def __call__(
    self, x_BxHxWxF: jnp.ndarray, cond_BxHxWxD: Optional[jnp.ndarray] = None
  ) -> jnp.ndarray:
    width = x_BxHxWxF.shape[2]
    # Both directions, the second mirrored: [2, B, H, W, 4h].
    gates_is = jnp.stack(
      [
        self.gates('fwd', x_BxHxWxF, cond_BxHxWxD),
        jnp.flip(self.gates('bwd', x_BxHxWxF, cond_BxHxWxD), axis=2),
      ]
    )
    kernel = self.state_to_state.astype(self.dtype)
    skewed = causal.skew(gates_is)  # [2, B, H, L, 4h], L = W + H - 1.
    init = layers.initial_state(self.initial_h, self.initial_c, skewed[:, :, :, 0, : self.hidden])
    columns = jnp.moveaxis(skewed, 3, 0)  # [L, 2, B, H, 4h]: one scan step per column.
    h_Lx2xBxHxh = banded_scan(kernel, columns, init, width)
    h = causal.unskew(jnp.moveaxis(h_Lx2xBxHxh, 0, 3), width)  # [2, B, H, W, h]
    return combine_directions(h[0], h[1])

  # One skewed column at a time, every block in step (the layer wavefront, models/wavefront.py).

  def initial_column(self, like_BxHxF: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(h, c) of both directions left of the image, the learned initial state:
    [2, B, H, hidden] each, float32, built from the input (layers.initial_state)."""
    like_1xBxHx1 = jnp.zeros_like(like_BxHxF[None, ..., :1], jnp.float32)
    return layers.initial_state(self.initial_h, self.initial_c, like_1xBxHx1)

  def column(
    self,
    carry: tuple[jnp.ndarray, jnp.ndarray],
    t: jnp.ndarray,
    x_fwd_BxHxF: jnp.ndarray,
    x_bwd_BxHxF: jnp.ndarray,
    cond_fwd_BxHxD: Optional[jnp.ndarray] = None,
    cond_bwd_BxHxD: Optional[jnp.ndarray] = None,
  ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(h, c) [2, B, H, hidden] of skewed column t (a traced scalar; outside [0, W + H - 1)
    it computes values nothing reads) from those of column t - 1 and the layer input on
    the column's diagonals: `x_fwd` at pixels (r, t - r), `x_bwd` at (r, W - 1 - t + r),
    the right-to-left direction's column t on the mirrored image (likewise `cond_*`). The
    step is __call__'s (column_step, then hold_left_of_image)."""
    gates_is = jnp.stack(
      [
        self.gates('fwd', x_fwd_BxHxF, cond_fwd_BxHxD),
        self.gates('bwd', x_bwd_BxHxF, cond_bwd_BxHxD),
      ]
    )
    kernel = self.state_to_state.astype(self.dtype)
    rows = jnp.arange(x_fwd_BxHxF.shape[1])[None, None, :, None]
    new = column_step(kernel, carry, gates_is)
    return hold_left_of_image(t, rows, new, self.initial_column(x_fwd_BxHxF))

  # One position at a time (the cached sampler).

  def _initial(self, like_Nxh: jnp.ndarray, direction: int):
    return layers.initial_state(self.initial_h[direction], self.initial_c[direction], like_Nxh)

  def init_cache(self, n: int, width: int, in_features: int) -> Cache:
    """Forward states of the row above (zero above row 0) and of the current row, the
    left neighbour's (h, c) (the learned initial state at column 0), the right-to-left
    output of the row above, and the current row's layer inputs."""
    f32, h = jnp.float32, self.hidden
    h_left, c_left = self._initial(jnp.zeros((n, h), f32), 0)
    return {
      'hf_above': jnp.zeros((n, width, h), f32),
      'hf_row': jnp.zeros((n, width, h), f32),
      'h_left': h_left,
      'c_left': c_left,
      'hb_above': jnp.zeros((n, width, h), f32),
      'x_row': jnp.zeros((n, width, in_features), self.dtype),
    }

  def position(
    self, cache: Cache, x_NxF: jnp.ndarray, cond_NxD: Optional[jnp.ndarray], c: jnp.ndarray
  ) -> tuple[jnp.ndarray, Cache, Cache]:
    """(output [N, hidden] at (r, c), updated caches, the left-neighbour (h, c) to keep
    once the pixel is final): the forward step plus the row above's right-to-left output."""
    h_new, c_new = diagonal_step(
      self.state_to_state[0].astype(self.dtype),
      _read(cache['hf_above'], c),
      cache['h_left'],
      cache['c_left'],
      self.gates('fwd', x_NxF, cond_NxD),
    )
    h_bwd = _read(cache['hb_above'], c)
    cache = {
      **cache,
      'hf_row': _write(cache['hf_row'], c, h_new),
      'x_row': _write(cache['x_row'], c, x_NxF),
    }
    return h_new + h_bwd, cache, {'h_left': h_new, 'c_left': c_new}

  def end_row(self, cache: Cache, cond_NxWxD: Optional[jnp.ndarray]) -> Cache:
    """After row r is complete: the right-to-left direction runs over it.

    Row r's layer inputs are final, and combine_directions adds this output to row r + 1
    only, so it runs exactly once per row. In mirrored coordinates it is the forward
    recurrence: above = the backward state of row r - 1, left = the column to the right.
    """
    gates = jnp.flip(self.gates('bwd', cache['x_row'], cond_NxWxD), axis=1)
    above = jnp.flip(cache['hb_above'], axis=1)
    kernel = self.state_to_state[1].astype(self.dtype)

    def step(carry, inputs):
      gates_Nx4h, above_Nxh = inputs
      h, c = diagonal_step(kernel, above_Nxh, carry[0], carry[1], gates_Nx4h)
      return (h, c), h

    carry = self._initial(cache['h_left'], 1)
    _, h_WxNxh = jax.lax.scan(step, carry, (jnp.swapaxes(gates, 0, 1), jnp.swapaxes(above, 0, 1)))
    # The next row's forward direction starts from the initial state again.
    h_left, c_left = self._initial(cache['h_left'], 0)
    return {
      **cache,
      'hb_above': jnp.flip(jnp.swapaxes(h_WxNxh, 0, 1), axis=1),
      'hf_above': cache['hf_row'],
      'hf_row': cache['hf_above'],
      'h_left': h_left,
      'c_left': c_left,
    }
