"""Row LSTM layer (SPEC.md section 3): a jax.lax.scan over image rows."""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from pixel_jax.models import layers


def row_state_to_state(kernel_3hx4h: jnp.ndarray, h_prev_BxWxh: jnp.ndarray) -> jnp.ndarray:
  """Unmasked width-3 convolution along the previous row: column c reads c-1, c, c+1.

  Row r-1 is entirely in the past of row r, so no mask is needed.
  """
  padded = jnp.pad(h_prev_BxWxh, ((0, 0), (1, 1), (0, 0)))
  width = h_prev_BxWxh.shape[1]
  neighbours = jnp.concatenate(
      [padded[:, :width], padded[:, 1:width + 1], padded[:, 2:]], axis=-1)
  return jnp.einsum('bwk,kf->bwf', neighbours.astype(kernel_3hx4h.dtype), kernel_3hx4h)


def row_lstm_step(kernel_3hx4h: jnp.ndarray, carry: tuple[jnp.ndarray, jnp.ndarray],
                  gates_is_BxWx4h: jnp.ndarray) -> tuple[tuple[jnp.ndarray, jnp.ndarray],
                                                         jnp.ndarray]:
  """One row of the recurrence: (h_{r-1}, c_{r-1}) and row r's input gates -> (h_r, c_r)."""
  h_prev, c_prev = carry
  gates = gates_is_BxWx4h.astype(jnp.float32) + row_state_to_state(kernel_3hx4h, h_prev)
  h, c = layers.lstm_cell(gates, c_prev)
  return (h, c), h


class RowLSTM(nn.Module):
  """Row LSTM: [B, H, W, F] -> hidden states [B, H, W, hidden].

  Input-to-state: a 1x3 mask-B convolution along the row (the paper's "3 x 1"), computed
  for the whole map at once. State-to-state: an unmasked width-3 convolution of the
  previous row's hidden state. `cond_BxHxWxD`, when given, goes through an unmasked 1x1
  convolution added to the input-to-state pre-activations (Multi-Scale PixelRNN).
  """
  hidden: int
  num_groups: int = 1
  dtype: Any = jnp.float32

  def input_to_state(self, x_BxHxWxF, cond_BxHxWxD=None):
    gates = layers.MaskedConv2D(4 * self.hidden, (1, 3), 'B', self.num_groups,
                                out_blocks=4, dtype=self.dtype, name='input_to_state')(x_BxHxWxF)
    if cond_BxHxWxD is not None:
      gates = gates + nn.Dense(4 * self.hidden, dtype=self.dtype,
                               name='cond_to_state')(cond_BxHxWxD)
    return gates

  @nn.compact
  def __call__(self, x_BxHxWxF: jnp.ndarray,
               cond_BxHxWxD: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    gates_is = self.input_to_state(x_BxHxWxF, cond_BxHxWxD)
    kernel = self.param('state_to_state', nn.initializers.lecun_normal(),
                        (3 * self.hidden, 4 * self.hidden)).astype(self.dtype)
    carry = layers.initial_state(self, gates_is[:, 0, :, :self.hidden], self.hidden)
    step = lambda carry, g: row_lstm_step(kernel, carry, g)
    _, h_HxBxWxh = jax.lax.scan(step, carry, jnp.swapaxes(gates_is, 0, 1))
    return jnp.swapaxes(h_HxBxWxh, 0, 1)
