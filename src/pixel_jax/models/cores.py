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

Caches are never read and written in place in the same step by different names (a buffer
read and then updated in place within one loop step makes XLA copy it whole every step).
Adding a core: its module (the class above), one entry here, its tests.
"""

from pixel_jax.models.pixelcnn import ConvBlock
from pixel_jax.models.pixelrnn import RecurrentBlock

CORES = {'row_lstm': RecurrentBlock, 'diagonal_bilstm': RecurrentBlock,
         'pixelcnn': ConvBlock}


def block_class(core: str):
  """The block module of `core`; one clear error for an unknown name."""
  if core not in CORES:
    raise ValueError(f'Unknown core {core!r}; use one of {tuple(CORES)}.')
  return CORES[core]


__all__ = ['CORES', 'block_class']
