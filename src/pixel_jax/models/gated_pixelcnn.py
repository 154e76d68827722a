"""Gated PixelCNN (van den Oord et al., NeurIPS 2016, "Conditional Image Generation with
PixelCNN Decoders"): a vertical and a horizontal stack with gated activations, over a whole
image and one position at a time (the cached sampler's block interface, models/cores.py).

The residual stream of this core is two stacks side by side, [vertical (h) ; horizontal
(h)]. Its first layer (`GatedInput`, INPUT_LAYER) starts both from the image: the vertical
stack with an unmasked convolution over rows r - k//2 .. r (all of row r, so the last
pixel of a row reaches the next row), the horizontal one with the k x k mask-A
convolution.

* Vertical stack: a (k//2 + 1) x k convolution over the rows r - k//2 .. r, every column
  of the window. Its output at row r depends on rows <= r only, including positions to the
  right in row r, so it never enters row r: it reaches the horizontal stack SHIFTED DOWN
  ONE ROW (the link below), where it holds rows < r only and needs no colour mask.
* Horizontal stack: a 1 x (k//2 + 1) mask-B convolution over (r, c - k//2 .. c), the R ->
  G -> B masks grouped per gate (both gate halves of channel j belong to unit j's colour),
  plus the link: an unmasked 1x1 convolution of the vertical pre-activations of the row
  above. Then the gate, a 1x1 mask-B convolution and the residual connection.
* Gates: tanh(a) * sigmoid(b) on the two halves of a fused 2h pre-activation.
* Skip: a 1x1 mask-B convolution of the horizontal output per block, summed into the head.
  Without skip connections the head reads the horizontal stack only (`readout`): the
  vertical stack at row r has seen the rest of row r.

The stacked vertical kernels widen by k//2 columns per layer on both sides, and the
shifted link passes all of it to the horizontal stack, so there is no blind spot: every
earlier sub-pixel within the stacks' reach is seen (tested for every colour).

One position: the horizontal stack runs at (r, c) against a buffer of the current row's
horizontal inputs; the vertical stack of row r needs all of row r, so it runs once the row
is complete (`end_row`), for every block in turn (`CHAINS_ROWS`: the first block reads the
first layer over the finished row, block l reads block l - 1's vertical output row). The
vertical inputs of the last k//2 rows and the row's pre-activations (what the link of row
r + 1 reads) stay in the cache.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from pixel_jax.models import causal
from pixel_jax.models.layers import ConditionBias
from pixel_jax.models.layers import MaskedConv2D
from pixel_jax.models.network_config import NetworkConfig

Cache = dict[str, jnp.ndarray]


def gate(pre_Nx2h: jnp.ndarray) -> jnp.ndarray:
  """tanh(a) * sigmoid(b) of the fused pre-activations [..., 2h] = [a ; b]."""
  a, b = jnp.split(pre_Nx2h, 2, axis=-1)
  return jnp.tanh(a) * jax.nn.sigmoid(b)


class VerticalConv(nn.Module):
  """The vertical stack's (k//2 + 1) x k convolution: output row r reads the input rows
  r - k//2 .. r at columns c - k//2 .. c + k//2. No mask: its output reaches the horizontal
  stack one row down only."""

  features: int
  kernel_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, rows_NxIxJxF: jnp.ndarray, pad_columns: bool = True) -> jnp.ndarray:
    """The output rows of `rows` [N, I, J, F] that have k//2 input rows above them (the
    caller pads the top): [N, I - k//2, J, features], or, with pad_columns=False, only
    the columns that have k//2 input columns on each side (one position from its window)."""
    k, q = self.kernel_size, self.kernel_size // 2
    x = rows_NxIxJxF.astype(self.dtype)
    if pad_columns:
      x = jnp.pad(x, ((0, 0), (0, 0), (q, q), (0, 0)))
    return nn.Conv(self.features, (q + 1, k), padding='VALID', dtype=self.dtype, name='conv')(x)


class GatedInput(nn.Module):
  """The first layer (the network's input convolution for this core): the stream
  [vertical ; horizontal] from the scaled image. Vertical: an unmasked (k//2 + 1) x k
  convolution over the image rows r - k//2 .. r (all of row r: it reaches the horizontal
  stack one row down). Horizontal: the k x k mask-A convolution."""

  cfg: NetworkConfig

  def setup(self):
    cfg, k = self.cfg, self.cfg.first_kernel_size
    self.vertical = VerticalConv(cfg.hidden_channels, k, dtype=cfg.dtype)
    self.horizontal = MaskedConv2D(
      cfg.hidden_channels, (k, k), 'A', cfg.num_channels, dtype=cfg.dtype
    )

  def __call__(self, images_BxHxWxC: jnp.ndarray) -> jnp.ndarray:
    q = self.cfg.first_kernel_size // 2
    v = self.vertical(jnp.pad(images_BxHxWxC, ((0, 0), (q, 0), (0, 0), (0, 0))))
    return jnp.concatenate([v, self.horizontal(images_BxHxWxC)], axis=-1)

  def at_window(self, window_NxIxJxC: jnp.ndarray) -> jnp.ndarray:
    """At one position from the window of rows r - k//2 .. r, columns c - k//2 .. c + k//2:
    [N, 2h]. The vertical half reads the window's current row to the right of c, which is
    final only once the row is complete (the cached sampler reads it after that)."""
    v = self.vertical(window_NxIxJxC, pad_columns=False)[:, 0, 0]
    return jnp.concatenate([v, self.horizontal.at_window(window_NxIxJxC)], axis=-1)


class GatedBlock(nn.Module):
  """One Gated PixelCNN layer on the stream [vertical ; horizontal]; returns (stream,
  skip), skip None unless cfg.skip. A conditioning map (a class) adds a learned bias to
  both stacks' gate pre-activations (layers.ConditionBias), the paper's conditional
  tanh(W_f * x + V_f h) * sigmoid(W_g * x + V_g h)."""

  cfg: NetworkConfig

  INPUT_LAYER = GatedInput
  CHAINS_ROWS = True

  def setup(self):
    cfg, h = self.cfg, self.cfg.hidden_channels
    k, c = cfg.kernel_size, cfg.num_channels
    self.vertical = VerticalConv(2 * h, k, dtype=cfg.dtype)
    self.horizontal = MaskedConv2D(2 * h, (1, k), 'B', c, out_blocks=2, dtype=cfg.dtype)
    self.link = nn.Dense(2 * h, dtype=cfg.dtype)
    self.cond_vertical = ConditionBias(2 * h, dtype=cfg.dtype)
    self.cond_horizontal = ConditionBias(2 * h, dtype=cfg.dtype)
    self.horizontal_out = MaskedConv2D(h, num_groups=c, dtype=cfg.dtype)
    if cfg.skip:
      self.skip = MaskedConv2D(cfg.features, num_groups=c, dtype=cfg.dtype)

  @staticmethod
  def readout(stream: jnp.ndarray) -> jnp.ndarray:
    """What the output head reads without skip connections: the horizontal stack."""
    return stream[..., stream.shape[-1] // 2 :]

  def _horizontal(self, hz: jnp.ndarray, h_pre: jnp.ndarray, v_pre_above: jnp.ndarray):
    """Gate, 1x1 out, residual and skip of the horizontal stack (any [..., F])."""
    y = self.horizontal_out(gate(h_pre + self.link(v_pre_above)))
    hz_out = (hz + y if self.cfg.residual else y).astype(hz.dtype)
    return hz_out, (self.skip(hz_out) if self.cfg.skip else None)

  def __call__(self, x_BxHxWx2h: jnp.ndarray, cond_BxHxWxD: Optional[jnp.ndarray] = None):
    q = self.cfg.kernel_size // 2
    v, hz = jnp.split(x_BxHxWx2h, 2, axis=-1)
    v_pre = self.cond_vertical(
      self.vertical(jnp.pad(v, ((0, 0), (q, 0), (0, 0), (0, 0)))), cond_BxHxWxD
    )
    h_pre = self.cond_horizontal(self.horizontal(hz), cond_BxHxWxD)
    hz_out, skip = self._horizontal(hz, h_pre, causal.shift_down(v_pre, 1))
    return jnp.concatenate([gate(v_pre).astype(v.dtype), hz_out], axis=-1), skip

  # One position at a time (the cached sampler).

  def init_cache(self, n: int) -> Cache:
    """The vertical inputs of the k//2 rows above (zeros above row 0), the vertical
    pre-activations of the row above (zeros above row 0, as shift_down), and the current
    row's horizontal inputs, k//2 zero columns on the left."""
    cfg, h, q = self.cfg, self.cfg.hidden_channels, self.cfg.kernel_size // 2
    w = cfg.image_size
    return {
      'v_rows': jnp.zeros((n, q, w, h), cfg.dtype),
      'v_pre_above': jnp.zeros((n, w, 2 * h), cfg.dtype),
      'h_row': jnp.zeros((n, w + q, h), cfg.dtype),
    }

  def position(
    self,
    cache: Cache,
    x_Nx2h: jnp.ndarray,
    cond_NxD: Optional[jnp.ndarray],
    r: jnp.ndarray,
    c: jnp.ndarray,
  ):
    """The horizontal stack at (r, c); the vertical half of the stream is passed on
    unchanged (the next block's vertical input comes through end_row)."""
    del r
    q = self.cfg.kernel_size // 2
    v, hz = jnp.split(x_Nx2h, 2, axis=-1)
    zero = jnp.zeros((), jnp.int32)
    h_row = jax.lax.dynamic_update_slice(
      cache['h_row'], hz.astype(cache['h_row'].dtype)[:, None, :], (zero, c + q, zero)
    )
    n, _, h = h_row.shape
    window = jax.lax.dynamic_slice(h_row, (zero, c, zero), (n, q + 1, h))
    v_pre_above = jax.lax.dynamic_index_in_dim(cache['v_pre_above'], c, axis=1, keepdims=False)
    h_pre = self.cond_horizontal(self.horizontal.at_window(window[:, None]), cond_NxD)
    hz_out, skip = self._horizontal(hz, h_pre, v_pre_above)
    return jnp.concatenate([v, hz_out], axis=-1), skip, {**cache, 'h_row': h_row}, {}

  def end_row(
    self, cache: Cache, cond_NxWxD: Optional[jnp.ndarray], row_NxWx2h: jnp.ndarray
  ) -> tuple[Cache, jnp.ndarray]:
    """Row r is complete and `row` is this block's input stream over it: the vertical stack
    of row r. Returns the cache and the row passed on to the next block (its vertical
    half is this block's vertical output)."""
    v, hz = jnp.split(row_NxWx2h, 2, axis=-1)
    rows = jnp.concatenate([cache['v_rows'], v[:, None].astype(cache['v_rows'].dtype)], axis=1)
    v_pre = self.cond_vertical(self.vertical(rows)[:, 0], cond_NxWxD)
    cache = {
      **cache,
      'v_rows': rows[:, 1:],
      'v_pre_above': v_pre.astype(cache['v_pre_above'].dtype),
    }
    return cache, jnp.concatenate([gate(v_pre).astype(v.dtype), hz], axis=-1)
