"""The registry of network cores: config.model.name -> the residual block module.

Every core is one Flax module class, constructed as `Block(cfg)` from the NetworkConfig,
that holds its full-image form and its one-position form side by side, on the same
submodules and parameters (both forms call the same step functions). The network
(models/network.py) stacks `num_layers` blocks; the cached sampler (sampling_cache.py)
drives them one position at a time through the methods below, applied with
`Block(cfg).apply(block_variables, ..., method=...)`, and knows nothing else of a core.

The interface (N: batch, F = cfg.features = 2h, D: conditioning channels):

  __call__(x [B, H, W, F], cond [B, H, W, D] | None) -> (out [B, H, W, F], skip | None)
      The full image: the residual stream in, the block's output and, when cfg.skip, its
      skip projection.
  init_cache(n) -> cache
      A dict of arrays: what later positions will read, before row 0.
  position(cache, x [N, F], cond [N, D] | None, r, c) -> (out [N, F], skip [N, F] | None,
                                                          cache, pending)
      The block at the one position (r, c) (traced int32 scalars): `x` is the block's input
      there, `cond` the conditioning map there. `pending` (a dict of cache entries) is
      merged into the cache only once the pixel's last channel is drawn: a pixel is visited
      once per channel, and later pixels must see the final visit only.
  end_row(cache, cond [N, W, D] | None) -> cache
      Called once row r is complete (every position of it visited for the last time).

Optional members (a core without them has the defaults of the helpers below):
  INPUT_LAYER: the first layer's module class, built as INPUT_LAYER(cfg), mapping scaled
      images [B, H, W, C] to the stream and one position's window to [N, F] (`at_window`)
      (default: the k x k mask-A convolution to 2h features).
  readout(stream) -> features: what the output head reads without skip connections
      (default the stream itself).
  CHAINS_ROWS: when True, end_row is end_row(cache, cond, row [N, W, .]) -> (cache, row):
      block l reads block l - 1's row output, and the first block reads the first layer
      over the finished row (default False: the blocks' end_row are
      independent and run in one vmapped call).

Caches are never read and written in place in the same step by different names (a buffer
read and then updated in place within one loop step makes XLA copy it whole every step).
Masked convolutions are layers.MaskedConv2D: the sampler masks and casts their kernels
once per sampling call (layers.PREPARED), by running the block's full-image form on one
pixel and its one-position form at (0, 0) before its loops, so the full-image form must
accept a [N, 1, 1, F] input.
Adding a core: its module (the class above), one entry here, its tests.
"""

from typing import Any

import flax.linen as nn

from pixel_jax.models.gated_pixelcnn import GatedBlock
from pixel_jax.models.layers import MaskedConv2D
from pixel_jax.models.network_config import NetworkConfig
from pixel_jax.models.pixelcnn import ConvBlock
from pixel_jax.models.pixelrnn import RecurrentBlock

CORES = {
  'row_lstm': RecurrentBlock,
  'diagonal_bilstm': RecurrentBlock,
  'pixelcnn': ConvBlock,
  'gated_pixelcnn': GatedBlock,
}


def block_class(core: str):
  """The block module of `core`; one clear error for an unknown name."""
  if core not in CORES:
    raise ValueError(f'Unknown core {core!r}; use one of {tuple(CORES)}.')
  return CORES[core]


def input_layer(cfg: NetworkConfig) -> nn.Module:
  """The first layer of a network with core cfg.core (INPUT_LAYER)."""
  block = block_class(cfg.core)
  if hasattr(block, 'INPUT_LAYER'):
    return block.INPUT_LAYER(cfg)
  k = cfg.first_kernel_size
  # Applied once per step, outside any loop: one convolution op (MaskedConv2D.conv_op).
  return MaskedConv2D(cfg.features, (k, k), 'A', cfg.num_channels, dtype=cfg.dtype, conv_op=True)


def readout(core: str, stream: Any) -> Any:
  """What the output head reads of `core`'s stream without skip connections."""
  block = block_class(core)
  return block.readout(stream) if hasattr(block, 'readout') else stream


def chains_rows(core: str) -> bool:
  """Whether `core`'s end_row passes a row from block to block (CHAINS_ROWS)."""
  return getattr(block_class(core), 'CHAINS_ROWS', False)


__all__ = ['CORES', 'block_class', 'chains_rows', 'input_layer', 'readout']
