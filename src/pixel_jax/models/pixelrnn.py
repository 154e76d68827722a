"""PixelRNN networks: residual blocks around a Row LSTM or Diagonal BiLSTM layer."""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from pixel_jax.models import network
from pixel_jax.models.diagonal_bilstm import DiagonalBiLSTM
from pixel_jax.models.layers import MaskedConv2D
from pixel_jax.models.row_lstm import RowLSTM

CORES = {'row_lstm': RowLSTM, 'diagonal_bilstm': DiagonalBiLSTM}


class RecurrentBlock(nn.Module):
  """LSTM layer on the 2h input gives h; a 1x1 mask-B convolution back to 2h; + input.

  Returns (output, skip) so it runs unrolled or under nn.scan (the output is the carry).
  """
  core: str
  hidden: int
  num_groups: int = 1
  residual: bool = True
  skip: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWx2h: jnp.ndarray, cond_BxHxWxD: Optional[jnp.ndarray] = None):
    h = CORES[self.core](self.hidden, self.num_groups, dtype=self.dtype,
                         name=self.core)(x_BxHxWx2h, cond_BxHxWxD)
    y = MaskedConv2D(x_BxHxWx2h.shape[-1], num_groups=self.num_groups, dtype=self.dtype,
                     name='output_conv')(h)
    # The residual is added exactly once, here (SPEC.md mistake 8).
    out = (x_BxHxWx2h + y if self.residual else y).astype(x_BxHxWx2h.dtype)
    return out, network.skip_projection(out, self.skip, self.num_groups, self.dtype)


def pixel_rnn(core: str, residual: bool = True, **kwargs) -> network.AutoregressiveNetwork:
  """A PixelRNN with the given core ('row_lstm' or 'diagonal_bilstm')."""
  return network.AutoregressiveNetwork(
      block_cls=RecurrentBlock, block_kwargs=(('core', core), ('residual', residual)),
      **kwargs)
