"""Row LSTM layer: a jax.lax.scan over image rows, and the same layer one position at a
time for the cached sampler.

Full image (`RowLSTM.__call__`): the input-to-state pre-activations are a 1x3 mask-B
convolution along the row (the paper's "3 x 1"), computed for the whole map at once; the
state-to-state part is an unmasked width-3 convolution of the previous row's hidden state
(row r - 1 is entirely in the past of row r, so it needs no mask). Both forms run
`row_lstm_step` on the states a position reads.

One position (the cached sampler's interface, see models/cores.py): the state at (r, c)
reads the previous row's h at c-1, c, c+1 and its c at c, and the 1x3 input-to-state
kernel reads the layer input at (r, c-1) and (r, c) (its right tap is masked). So the cache
holds the previous row's (h, c) (the learned initial state for row -1), the current row's
(h, c) being written, and the current row's layer inputs. A visit writes its input at c
and then reads columns c-1 and c: the column c-1 holds the left neighbour's final visit,
so nothing waits for the pixel's last channel (no pending state), and a buffer written
and then read in a step stays in place.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from pixel_jax.models import layers

Cache = dict[str, jnp.ndarray]


def row_neighbours(h_prev_BxWxh: jnp.ndarray) -> jnp.ndarray:
  """[h(c-1), h(c), h(c+1)] of the previous row at every column c, zero-padded: [B, W, 3h]."""
  padded = jnp.pad(h_prev_BxWxh, ((0, 0), (1, 1), (0, 0)))
  width = h_prev_BxWxh.shape[1]
  return jnp.concatenate([padded[:, :width], padded[:, 1 : width + 1], padded[:, 2:]], axis=-1)


def row_lstm_step(
  kernel_3hx4h: jnp.ndarray,
  h_above_Nx3h: jnp.ndarray,
  c_above_Nxh: jnp.ndarray,
  gates_is_Nx4h: jnp.ndarray,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(h, c) at a position (or a whole row) from the three h above it and the c above it."""
  return layers.lstm_step(kernel_3hx4h, h_above_Nx3h, gates_is_Nx4h, c_above_Nxh)


def _read(buffer_NxWxF: jnp.ndarray, c: jnp.ndarray, cols: int) -> jnp.ndarray:
  """buffer[:, c:c+cols] for a traced column c: [N, cols, F]."""
  zero = jnp.zeros((), jnp.int32)
  n, _, f = buffer_NxWxF.shape
  return jax.lax.dynamic_slice(buffer_NxWxF, (zero, c, zero), (n, cols, f))


def _write(buffer_NxWxF: jnp.ndarray, c: jnp.ndarray, value_NxF: jnp.ndarray) -> jnp.ndarray:
  """buffer[:, c] = value, in place inside the sampling loop."""
  zero = jnp.zeros((), jnp.int32)
  update = value_NxF.astype(buffer_NxWxF.dtype)[:, None, :]
  return jax.lax.dynamic_update_slice(buffer_NxWxF, update, (zero, c, zero))


class RowLSTM(nn.Module):
  """Row LSTM: [B, H, W, F] -> hidden states [B, H, W, hidden].

  `cond_BxHxWxD`, when given, goes through an unmasked 1x1 convolution (cond_to_state, a
  layers.ConditionBias) added to the input-to-state pre-activations (a class, the
  Multi-Scale PixelRNN's small image).
  """

  hidden: int
  num_groups: int = 1
  dtype: Any = jnp.float32

  def setup(self):
    h = self.hidden
    self.input_to_state = layers.MaskedConv2D(
      4 * h, (1, 3), 'B', self.num_groups, out_blocks=4, dtype=self.dtype
    )
    self.cond_to_state = layers.ConditionBias(4 * h, dtype=self.dtype)
    self.state_to_state = self.param(
      'state_to_state', nn.initializers.lecun_normal(), (3 * h, 4 * h)
    )
    self.initial_h = self.param('initial_h', nn.initializers.zeros, (h,))
    self.initial_c = self.param('initial_c', nn.initializers.zeros, (h,))

  def __call__(
    self, x_BxHxWxF: jnp.ndarray, cond_BxHxWxD: Optional[jnp.ndarray] = None
  ) -> jnp.ndarray:
    # Rows first: the scan runs over rows, and the 1 x 3 kernel reads along the row only,
    # so it is computed on [H, B, W, .] as well (the transposed map has 2h channels, the
    # gates 4h).
    x_HxBxWxF = jnp.swapaxes(x_BxHxWxF, 0, 1)
    cond = None if cond_BxHxWxD is None else jnp.swapaxes(cond_BxHxWxD, 0, 1)
    gates_is_HxBxWx4h = self.cond_to_state(self.input_to_state(x_HxBxWxF), cond)
    kernel = self.state_to_state.astype(self.dtype)
    h0, c0 = self.initial_row(x_HxBxWxF[0])

    def step(carry, gates_BxWx4h):
      h, c = row_lstm_step(kernel, row_neighbours(carry[0]), carry[1], gates_BxWx4h)
      return (h, c), h

    _, h_HxBxWxh = jax.lax.scan(step, (h0, c0), gates_is_HxBxWx4h)
    return jnp.swapaxes(h_HxBxWxh, 0, 1)

  # One row at a time (the layer wavefront, models/wavefront.py).

  def initial_row(self, like_BxWxF: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(h, c) of row -1, the learned initial state: [B, W, hidden] each, float32, built
    from the input (so the carry keeps its sharding, see layers.initial_state)."""
    like_BxWx1 = jnp.zeros_like(like_BxWxF[..., :1], jnp.float32)
    return layers.initial_state(self.initial_h, self.initial_c, like_BxWx1)

  def row(
    self,
    carry: tuple[jnp.ndarray, jnp.ndarray],
    x_BxWxF: jnp.ndarray,
    cond_BxWxD: Optional[jnp.ndarray] = None,
  ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(h, c) of row r [B, W, hidden] from (h, c) of row r - 1 and the layer input of row r
    alone: the 1x3 input-to-state kernel reads only its own row, so a row's products need
    nothing of the rows below, and the step is __call__'s (row_lstm_step)."""
    cond = None if cond_BxWxD is None else cond_BxWxD[:, None]
    gates_is = self.cond_to_state(self.input_to_state(x_BxWxF[:, None]), cond)[:, 0]
    kernel = self.state_to_state.astype(self.dtype)
    return row_lstm_step(kernel, row_neighbours(carry[0]), carry[1], gates_is)

  # One position at a time (the cached sampler).

  def init_cache(self, n: int, width: int, in_features: int) -> Cache:
    """The caches before row 0: row -1 is the learned initial state. The state rows hold
    [h, c] at column c + 1; their columns 0 and W + 1 are the zero padding of
    row_neighbours. Column 0 of the input row (x_row[:, c + 1] is the input at column c)
    is the input-to-state convolution's zero padding."""
    f32 = jnp.float32
    state_row = jnp.zeros((n, width + 2, 2 * self.hidden), f32)
    initial = jnp.concatenate([self.initial_h, self.initial_c]).astype(f32)
    return {
      'state_above': state_row.at[:, 1 : width + 1].add(initial),
      'state_row': state_row,
      'x_row': jnp.zeros((n, width + 1, in_features), self.dtype),
    }

  def position(
    self, cache: Cache, x_NxF: jnp.ndarray, cond_NxD: Optional[jnp.ndarray], c: jnp.ndarray
  ) -> tuple[jnp.ndarray, Cache, Cache]:
    """(h [N, hidden] at (r, c), updated caches, no pending state). Buffers read during a
    row (the row above) are never written in it; the input row is written, then read.
    h and c share one buffer, so a position reads the row above and writes its state with
    one slice each."""
    n, h = x_NxF.shape[0], self.hidden
    x_row = _write(cache['x_row'], c + 1, x_NxF)
    taps = _read(x_row, c, 2)  # The inputs at c-1 and c.
    gates_is = self.cond_to_state(self.input_to_state.at_window(taps[:, None]), cond_NxD)
    above = _read(cache['state_above'], c, 3)  # Columns c-1, c, c+1: [N, 3, 2h].
    h_new, c_new = row_lstm_step(
      self.state_to_state.astype(self.dtype),
      above[..., :h].reshape(n, -1),
      above[:, 1, h:],
      gates_is,
    )
    state_row = _write(cache['state_row'], c + 1, jnp.concatenate([h_new, c_new], axis=-1))
    return h_new, {**cache, 'state_row': state_row, 'x_row': x_row}, {}

  def end_row(self, cache: Cache, cond_NxWxD: Optional[jnp.ndarray]) -> Cache:
    """The finished row becomes the row above. The current row's buffer is left as it is
    (the next row writes every column before end_row reads it, and swapping the two would
    copy both); the input row needs no reset either: column 0 stays zero, and a visit
    writes its column before reading it."""
    del cond_NxWxD  # Already added at each position.
    return {**cache, 'state_above': cache['state_row']}
