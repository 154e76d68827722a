"""The network skeleton shared by PixelRNN and PixelCNN (SPEC.md section 5).

images -> scale to [-1, 1] -> 7x7 mask-A convolution to 2h features -> num_layers blocks
(optionally scanned) -> [sum of per-layer skip projections] -> output head -> logits.
"""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from pixel_jax.models import layers


class AutoregressiveNetwork(nn.Module):
  """Maps images [B, H, W, C] of integer levels to logits [B, H, W, C, num_levels].

  Attributes:
    block_cls: the residual block (RecurrentBlock or ConvBlock); its __call__ takes
      (x, cond) and returns (x, skip) so the same block runs unrolled or under nn.scan.
    block_kwargs: the block's attributes, as a tuple of (name, value) pairs.
    num_layers: number of blocks.
    hidden_channels: h; the residual stream has 2h channels.
    num_channels / num_levels / image_size: the data (C, K and H = W).
    out_hidden_channels: width of the output head's hidden layer.
    first_kernel_size: the mask-A input convolution's kernel size.
    skip: when True the head reads the sum of every block's skip projection (OPEN in the
      paper; our choice: a 1x1 mask-B convolution per block, summed) instead of the last
      block's output.
    scan_layers: nn.scan over the identical blocks: compile time independent of depth.
    dtype: compute dtype.
  """
  block_cls: Any
  block_kwargs: tuple
  num_layers: int
  hidden_channels: int
  num_channels: int
  num_levels: int
  image_size: int
  out_hidden_channels: int = 32
  first_kernel_size: int = 7
  skip: bool = False
  scan_layers: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images_BxHxWxC: jnp.ndarray,
               cond_BxHxWxD: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    layers.check_images(images_BxHxWxC, self.image_size, self.num_channels)
    x = layers.scale_input(images_BxHxWxC, self.num_levels)
    k = self.first_kernel_size
    x = layers.MaskedConv2D(2 * self.hidden_channels, (k, k), 'A', self.num_channels,
                            dtype=self.dtype, name='input_conv')(x)
    kwargs = dict(self.block_kwargs, hidden=self.hidden_channels,
                  num_groups=self.num_channels, skip=self.skip, dtype=self.dtype)
    if self.scan_layers:
      blocks = nn.scan(self.block_cls, variable_axes={'params': 0},
                       split_rngs={'params': True}, in_axes=nn.broadcast,
                       length=self.num_layers)
      x, skips = blocks(**kwargs, name='blocks')(x, cond_BxHxWxD)
      skip_sum = skips.sum(axis=0) if self.skip else None
    else:
      skips = []
      for i in range(self.num_layers):
        x, s = self.block_cls(**kwargs, name=f'block_{i}')(x, cond_BxHxWxD)
        skips.append(s)
      skip_sum = sum(skips) if self.skip else None
    head_input = skip_sum if self.skip else x
    return layers.OutputHead(self.num_channels, self.num_levels, self.out_hidden_channels,
                             dtype=self.dtype, name='head')(head_input)


def skip_projection(out_BxHxWxF: jnp.ndarray, enabled: bool,
                    num_groups: int, dtype: Any) -> Optional[jnp.ndarray]:
  """A block's learnable skip connection to the output: a 1x1 mask-B convolution."""
  if not enabled:
    return None
  return layers.MaskedConv2D(out_BxHxWxF.shape[-1], num_groups=num_groups, dtype=dtype,
                             name='skip')(out_BxHxWxF)
