"""PixelCNN: residual blocks of masked convolutions, over a whole image and one position
at a time (the cached sampler's block interface, models/cores.py).

Block layout (open in the paper; the usual reading): ReLU -> 1x1 mask B 2h -> h -> ReLU ->
kxk mask B -> ReLU -> 1x1 mask B h -> 2h, plus the input. Stacked 3x3 mask-B kernels never
reach the region above and to the right of a pixel beyond their diagonal: the PixelCNN blind
spot, reproduced on purpose and tested.

One position: the 1x1 layers are pointwise; the input map of the kxk convolution is kept
in a zero-padded buffer (Ramachandran et al. 2017), written at (r, c) and read as the
window of rows r - k//2 .. r (rows below the centre are masked, so never needed).
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from pixel_jax.models.layers import ConditionBias
from pixel_jax.models.layers import MaskedConv2D
from pixel_jax.models.network_config import NetworkConfig

Cache = dict[str, jnp.ndarray]


class ConvBlock(nn.Module):
  """The PixelCNN residual bottleneck block; returns (output, skip), skip None unless
  cfg.skip. A conditioning map (a class, layers.ConditionBias) adds a learned bias to each
  of the three convolutions' pre-activations."""

  cfg: NetworkConfig

  def setup(self):
    cfg = self.cfg
    conv = lambda f, k: MaskedConv2D(f, (k, k), 'B', cfg.num_channels, dtype=cfg.dtype)
    self.reduce = conv(cfg.hidden_channels, 1)
    # One convolution op per layer when the layers are unrolled; im2col under nn.scan.
    self.masked_conv = MaskedConv2D(
      cfg.hidden_channels,
      (cfg.kernel_size, cfg.kernel_size),
      'B',
      cfg.num_channels,
      dtype=cfg.dtype,
      conv_op=not cfg.scan_layers,
    )
    self.expand = conv(cfg.features, 1)
    bias = lambda f: ConditionBias(f, dtype=cfg.dtype)
    self.cond_reduce = bias(cfg.hidden_channels)
    self.cond_masked_conv = bias(cfg.hidden_channels)
    self.cond_expand = bias(cfg.features)
    if cfg.skip:
      self.skip = conv(cfg.features, 1)

  def _reduce(self, x: jnp.ndarray, cond: Optional[jnp.ndarray]) -> jnp.ndarray:
    """The masked convolution's input: ReLU of the conditioned 1x1 reduction."""
    return nn.relu(self.cond_reduce(self.reduce(nn.relu(x)), cond))

  def _finish(self, x: jnp.ndarray, y: jnp.ndarray, cond: Optional[jnp.ndarray]):
    """y: the masked convolution's output; then the expansion, residual and skip."""
    y = self.cond_masked_conv(y, cond)
    y = self.cond_expand(self.expand(nn.relu(y)), cond)
    out = (x + y if self.cfg.residual else y).astype(x.dtype)
    return out, (self.skip(out) if self.cfg.skip else None)

  def __call__(self, x_BxHxWx2h: jnp.ndarray, cond_BxHxWxD: Optional[jnp.ndarray] = None):
    y = self.masked_conv(self._reduce(x_BxHxWx2h, cond_BxHxWxD))
    return self._finish(x_BxHxWx2h, y, cond_BxHxWxD)

  def init_cache(self, n: int) -> Cache:
    cfg, q = self.cfg, self.cfg.kernel_size // 2
    return {
      'conv_in': jnp.zeros(
        (n, cfg.image_size + q, cfg.image_size + 2 * q, cfg.hidden_channels), cfg.dtype
      )
    }

  def position(
    self,
    cache: Cache,
    x_Nx2h: jnp.ndarray,
    cond_NxD: Optional[jnp.ndarray],
    r: jnp.ndarray,
    c: jnp.ndarray,
  ):
    k, q = self.cfg.kernel_size, self.cfg.kernel_size // 2
    a = self._reduce(x_Nx2h, cond_NxD)
    zero = jnp.zeros((), jnp.int32)
    conv_in = jax.lax.dynamic_update_slice(
      cache['conv_in'],
      a.astype(cache['conv_in'].dtype)[:, None, None, :],
      (zero, r + q, c + q, zero),
    )
    n, h = a.shape
    window = jax.lax.dynamic_slice(conv_in, (zero, r, c, zero), (n, q + 1, k, h))
    out, skip = self._finish(x_Nx2h, self.masked_conv.at_window(window), cond_NxD)
    return out, skip, {'conv_in': conv_in}, {}

  def end_row(self, cache: Cache, cond_NxWxD: Optional[jnp.ndarray]) -> Cache:
    del cond_NxWxD
    return cache
