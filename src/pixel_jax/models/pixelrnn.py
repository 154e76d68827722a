"""The PixelRNN residual block around a Row LSTM or Diagonal BiLSTM layer, over a whole
image and one position at a time (the cached sampler's block interface, models/cores.py)."""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from pixel_jax.models.diagonal_bilstm import DiagonalBiLSTM
from pixel_jax.models.layers import MaskedConv2D
from pixel_jax.models.network_config import NetworkConfig
from pixel_jax.models.row_lstm import RowLSTM

LAYERS = {'row_lstm': RowLSTM, 'diagonal_bilstm': DiagonalBiLSTM}

Cache = dict[str, jnp.ndarray]


class RecurrentBlock(nn.Module):
  """LSTM layer (cfg.core) on the 2h input gives h; a 1x1 mask-B convolution back to 2h;
  + input. Returns (output, skip) so it runs unrolled or under nn.scan (the output is the
  carry); skip is None unless cfg.skip."""

  cfg: NetworkConfig

  def setup(self):
    cfg = self.cfg
    # The layer's parameters live under its core's name ('row_lstm' / 'diagonal_bilstm').
    self.layer = LAYERS[cfg.core](
      cfg.hidden_channels, cfg.num_channels, dtype=cfg.dtype, name=cfg.core
    )
    self.output_conv = MaskedConv2D(cfg.features, num_groups=cfg.num_channels, dtype=cfg.dtype)
    if cfg.skip:
      self.skip = MaskedConv2D(cfg.features, num_groups=cfg.num_channels, dtype=cfg.dtype)

  def finish(self, x: jnp.ndarray, h: jnp.ndarray):
    """(output, skip) from the block's input and the layer's output: output_conv, the
    residual (added exactly once, here) and the skip projection; the 1x1 convolutions
    take a whole map, a row, a diagonal or one position alike."""
    y = self.output_conv(h)
    out = (x + y if self.cfg.residual else y).astype(x.dtype)
    return out, (self.skip(out) if self.cfg.skip else None)

  def __call__(self, x_BxHxWx2h: jnp.ndarray, cond_BxHxWxD: Optional[jnp.ndarray] = None):
    return self.finish(x_BxHxWx2h, self.layer(x_BxHxWx2h, cond_BxHxWxD))

  # One row at a time, every block in step (the layer wavefront, models/wavefront.py).

  def initial_row(self, like_BxWx2h: jnp.ndarray):
    """The layer's state before row 0 (the learned initial state)."""
    return self.layer.initial_row(like_BxWx2h)

  def row(self, carry, x_BxWx2h: jnp.ndarray, cond_BxWxD: Optional[jnp.ndarray] = None):
    """The block over row r: (the layer's state after row r, (output, skip) of row r), from
    the state after row r - 1 and the block's input of row r; `finish` as in __call__."""
    carry = self.layer.row(carry, x_BxWx2h, cond_BxWxD)
    return carry, self.finish(x_BxWx2h, carry[0])

  def initial_column(self, like_BxHx2h: jnp.ndarray):
    """The Diagonal BiLSTM's state left of the image (the learned initial state)."""
    return self.layer.initial_column(like_BxHx2h)

  def column(
    self,
    carry,
    t: jnp.ndarray,
    x_fwd_BxHx2h: jnp.ndarray,
    x_bwd_BxHx2h: jnp.ndarray,
    cond_fwd_BxHxD: Optional[jnp.ndarray] = None,
    cond_bwd_BxHxD: Optional[jnp.ndarray] = None,
  ):
    """The Diagonal BiLSTM's state after skewed column t, from the state after column
    t - 1 and the block's input on the column's two diagonals (DiagonalBiLSTM.column); the
    block's outputs come from `finish` once both directions have reached a pixel."""
    return self.layer.column(carry, t, x_fwd_BxHx2h, x_bwd_BxHx2h, cond_fwd_BxHxD, cond_bwd_BxHxD)

  def init_cache(self, n: int) -> Cache:
    return self.layer.init_cache(n, self.cfg.image_size, self.cfg.features)

  def position(
    self,
    cache: Cache,
    x_Nx2h: jnp.ndarray,
    cond_NxD: Optional[jnp.ndarray],
    r: jnp.ndarray,
    c: jnp.ndarray,
  ):
    del r  # The layers' caches hold the current row.
    h, cache, pending = self.layer.position(cache, x_Nx2h, cond_NxD, c)
    out, skip = self.finish(x_Nx2h, h)
    return out, skip, cache, pending

  def end_row(self, cache: Cache, cond_NxWxD: Optional[jnp.ndarray]) -> Cache:
    return self.layer.end_row(cache, cond_NxWxD)
