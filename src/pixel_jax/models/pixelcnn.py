"""PixelCNN: residual blocks of masked convolutions (SPEC.md section 5).

Block layout (OPEN in the paper; the usual reading): ReLU -> 1x1 mask B 2h -> h -> ReLU ->
3x3 mask B -> ReLU -> 1x1 mask B h -> 2h, plus the input. Stacked 3x3 mask-B kernels never
reach the region above and to the right of a pixel beyond their diagonal: the PixelCNN blind
spot, reproduced on purpose and tested.
"""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from pixel_jax.models import network
from pixel_jax.models.layers import MaskedConv2D


class ConvBlock(nn.Module):
  """The PixelCNN residual bottleneck block; returns (output, skip)."""
  hidden: int
  num_groups: int = 1
  kernel_size: int = 3
  residual: bool = True
  skip: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWx2h: jnp.ndarray, cond_BxHxWxD: Optional[jnp.ndarray] = None):
    del cond_BxHxWxD  # PixelCNN takes no conditioning map.
    conv = lambda f, k, name: MaskedConv2D(f, (k, k), 'B', self.num_groups,
                                           dtype=self.dtype, name=name)
    y = conv(self.hidden, 1, 'reduce')(nn.relu(x_BxHxWx2h))
    y = conv(self.hidden, self.kernel_size, 'masked_conv')(nn.relu(y))
    y = conv(x_BxHxWx2h.shape[-1], 1, 'expand')(nn.relu(y))
    out = (x_BxHxWx2h + y if self.residual else y).astype(x_BxHxWx2h.dtype)
    return out, network.skip_projection(out, self.skip, self.num_groups, self.dtype)


def pixel_cnn(residual: bool = True, kernel_size: int = 3,
              **kwargs) -> network.AutoregressiveNetwork:
  """A PixelCNN (15 blocks in the paper)."""
  return network.AutoregressiveNetwork(
      block_cls=ConvBlock,
      block_kwargs=(('residual', residual), ('kernel_size', kernel_size)), **kwargs)
