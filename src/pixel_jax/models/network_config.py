"""The network record: every hyperparameter of one AutoregressiveNetwork, in one place.

`NetworkConfig` is a frozen (hence hashable) dataclass, so it is a valid Flax module
attribute and a static jit argument. It is built once from the experiment config
(`from_config`) and handed unchanged to the network, its blocks and the cached sampler;
variants (the small network of the Multi-Scale PixelRNN) are `dataclasses.replace` copies.
"""

import dataclasses
from typing import Any

import jax.numpy as jnp
import ml_collections

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
  """Hyperparameters of one network.

  Attributes:
    core: the block type, a key of models.cores.CORES ('row_lstm', 'diagonal_bilstm',
      'pixelcnn').
    num_layers: number of residual blocks.
    hidden_channels: h; the residual stream has 2h channels.
    num_channels / num_levels / image_size: the data (C, K and H = W).
    out_hidden_channels: width of the output head's hidden layers.
    out_hidden_layers: number of hidden 1x1 layers in the output head before the logits.
    first_kernel_size: the mask-A input convolution's kernel size (odd).
    skip: when True the head reads the sum of every block's skip projection (a 1x1 mask-B
      convolution per block) instead of the last block's output.
    scan_layers: nn.scan over the identical blocks: compile time independent of depth.
    residual: add each block's input to its output.
    wavefront: run every block in one scan (models/wavefront.py) instead of one scan per
      block; the same parameters and outputs. Row LSTM: H + L - 1 row steps, block l on row
      s - l at step s. Diagonal BiLSTM: (W + H - 1) + (L - 1) W skewed-column steps, block
      l on column s - W l. Recurrent cores only (wavefront.WAVEFRONT_CORES).
    kernel_size: the PixelCNN blocks' spatial kernel (unused by the PixelRNN cores).
    num_classes: K > 0 makes the network class-conditional (it then takes labels [B] in
      [0, K)); 0: unconditional.
    dtype: compute dtype; parameters stay float32.
  """

  core: str
  num_layers: int
  hidden_channels: int
  num_channels: int
  num_levels: int
  image_size: int
  out_hidden_channels: int = 32
  out_hidden_layers: int = 1
  first_kernel_size: int = 7
  skip: bool = False
  scan_layers: bool = True
  residual: bool = True
  wavefront: bool = False
  kernel_size: int = 3
  num_classes: int = 0
  dtype: Any = jnp.float32

  @property
  def features(self) -> int:
    """Channels of the residual stream between blocks: 2h."""
    return 2 * self.hidden_channels

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'NetworkConfig':
    """The network of config.model and config.data (core = config.model.name)."""
    m, d = config.model, config.data
    return cls(
      core=m.name,
      num_layers=m.num_layers,
      hidden_channels=m.hidden_channels,
      num_channels=d.num_channels,
      num_levels=d.num_levels,
      image_size=d.image_size,
      out_hidden_channels=m.out_hidden_channels,
      out_hidden_layers=m.out_hidden_layers,
      first_kernel_size=m.first_kernel_size,
      skip=m.skip,
      scan_layers=m.scan_layers,
      residual=m.residual,
      wavefront=m.wavefront,
      num_classes=m.num_classes,
      dtype=DTYPES[m.dtype],
    )


__all__ = ['DTYPES', 'NetworkConfig']
