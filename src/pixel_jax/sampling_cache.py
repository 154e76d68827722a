"""The network one position at a time: what makes a sampling step cost one position.

The naive sampler runs the whole network over the whole image for every sub-pixel. Here
each layer keeps what later positions will read of it, and a step computes every layer at
the ONE new position (r, c) only. This module is the generic part: the image cache and the
mask-A input convolution's window, the chain of blocks with their residual stream and skip
sum, and the output head. Each block's own one-position form and caches live beside its
full-image form in its core's module; the block is found by one registry lookup
(models/cores.py, which documents the interface) and driven through Flax methods on the
same parameters, so nothing here depends on a core or on parameter names.

Input convolution: the scaled image is stored zero-padded; the kxk mask-A output at (r, c)
is the masked kernel applied to the window of rows r - k//2 .. r (the rows below the
centre are masked, so never sliced).

Prepared kernels: every masked convolution's kernel is masked and cast once per sampling
call, outside the loops, not at every step (layers.PREPARED), and so is the matrix a
one-position form multiplies its window with (MaskedConv2D.window_kernel). Each module is
applied once ahead of the loops with that collection mutable - a block through its
full-image form on one pixel, which reads every parameter of the block, and through its
one-position form - and the loops apply it with the stored arrays. A core needs nothing
for this beyond using layers.MaskedConv2D.

Conditioning (Multi-Scale PixelRNN): a map [N, H, W, D] known before sampling starts; each
block receives it at the position a step visits (and the finished row at end_row).

Colour: a pixel is visited once per channel; each visit recomputes the position with the
sub-pixels sampled so far. By the masks, the features at (r, c) never depend on the last
channel of (r, c), so after the last visit every cache holds exactly the naive features.
Both forms run the same modules, so both samplers compute the same numbers up to the
summation order of the convolutions.
"""

from typing import Any, Optional

from flax import traverse_util
import jax
import jax.numpy as jnp

from pixel_jax.models import cores
from pixel_jax.models import layers
from pixel_jax.models import network
from pixel_jax.models.network_config import NetworkConfig

Array = jnp.ndarray
Cache = dict[str, Any]


def network_config(model: Any) -> NetworkConfig:
  """The NetworkConfig of a model built by models.get_model; one clear error otherwise."""
  if not isinstance(model, network.AutoregressiveNetwork):
    raise ValueError(
      f"method='cached' supports the networks of models.get_model "
      f'({", ".join(cores.CORES)}); got {type(model).__name__}. '
      "Use method='naive'."
    )
  return model.cfg


def _with_prepared(module: Any, variables: Any, *calls: tuple[Any, tuple[Any, ...]]) -> Any:
  """`variables` plus the PREPARED kernels of every masked convolution that the calls
  (method, args) of `module` read: masked and cast here, once."""
  prepared: dict[tuple[str, ...], Any] = {}
  for method, args in calls:
    _, state = module.apply(variables, *args, method=method, mutable=[layers.PREPARED])
    prepared.update(traverse_util.flatten_dict(state[layers.PREPARED]))
  return {**variables, layers.PREPARED: traverse_util.unflatten_dict(prepared)}


def _stack(trees: list[Any]) -> Any:
  return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def _unstack(tree: Any, n: int) -> list[Any]:
  return [jax.tree_util.tree_map(lambda a, i=i: a[i], tree) for i in range(n)]


class CachedNetwork:
  """The network evaluated one position at a time against per-layer caches.

  `init` builds the caches for a batch of starting images, `position` computes the logits
  of every channel at (r, c) and writes that position into every cache, `set_subpixel`
  records a sampled value, `end_pixel` and `end_row` finish a pixel and a row. The caches
  are one pytree carried by the sampling loops: the image and one dict per block.
  """

  def __init__(self, model: Any, variables: Any, cond_NxHxWxD: Optional[Array] = None):
    self.cfg = cfg = network_config(model)
    self.cond = None if cond_NxHxWxD is None else cond_NxHxWxD.astype(cfg.dtype)
    self.pad = cfg.first_kernel_size // 2
    net = network.AutoregressiveNetwork
    window = jnp.zeros((1, self.pad + 1, cfg.first_kernel_size, cfg.num_channels))
    self.model, self.variables = (
      model,
      _with_prepared(
        model,
        variables,
        (net.input_at, (window,)),
        (net.logits_at, (jnp.zeros((1, cfg.features), cfg.dtype),)),
      ),
    )
    self.block = cores.block_class(cfg.core)(cfg)
    self.stacked_vars = jax.vmap(self._prepare_block)(
      _stack(network.block_variables(cfg, variables))
    )
    self.block_vars = _unstack(self.stacked_vars, cfg.num_layers)
    self.chains_rows = cores.chains_rows(cfg.core)

  def _prepare_block(self, block_variables: Any) -> Any:
    """One block's variables plus its PREPARED kernels: both forms applied to one pixel."""
    block, zero = type(self.block), jnp.zeros((), jnp.int32)
    pixel = jnp.zeros((1, 1, 1, self.cfg.features), self.cfg.dtype)
    cond_pixel = None if self.cond is None else self.cond[:1, :1, :1]
    cache = self.block.apply(block_variables, 1, method=block.init_cache)
    at = (cache, pixel[:, 0, 0], None if cond_pixel is None else cond_pixel[:, 0, 0], zero, zero)
    return _with_prepared(
      self.block,
      block_variables,
      (block.__call__, (pixel, cond_pixel)),
      (block.position, at),
    )

  def init(self, images_NxHxWxC: Array) -> Cache:
    """Caches for a batch of starting images (zeros, or a prefix for completion)."""
    n, p = images_NxHxWxC.shape[0], self.pad
    scaled = layers.scale_input(images_NxHxWxC, self.cfg.num_levels)
    # The input convolution pads with zeros in the scaled domain; no bottom rows needed.
    image = jnp.pad(scaled, ((0, 0), (p, 0), (p, p), (0, 0)))
    blocks = [self.block.apply(v, n, method=type(self.block).init_cache) for v in self.block_vars]
    return {'image': image, 'blocks': blocks}

  def set_subpixel(self, cache: Cache, r: Array, c: Array, ch: Array, value_N: Array) -> Cache:
    """Records sampled (or known) levels of sub-pixel (r, c, ch) in the image cache."""
    scaled = layers.scale_input(value_N, self.cfg.num_levels)[:, None, None, None]
    zero = jnp.zeros((), jnp.int32)
    image = jax.lax.dynamic_update_slice(
      cache['image'], scaled, (zero, r + self.pad, c + self.pad, ch)
    )
    return {**cache, 'image': image}

  def position(self, cache: Cache, r: Array, c: Array) -> tuple[Array, Cache, list[Cache]]:
    """Logits [N, C, K] at (r, c), the updated caches, and each block's pending state.

    The pending state becomes part of the caches once the pixel's last channel is drawn
    (`end_pixel`); earlier visits of the pixel must not see it.
    """
    cfg, image = self.cfg, cache['image']
    zero = jnp.zeros((), jnp.int32)
    window = jax.lax.dynamic_slice(
      image,
      (zero, r, c, zero),
      (image.shape[0], self.pad + 1, cfg.first_kernel_size, cfg.num_channels),
    )
    x = self.model.apply(self.variables, window, method=network.AutoregressiveNetwork.input_at)
    cond = None if self.cond is None else self.cond[:, r, c]
    skip_sum, blocks, pending = None, [], []
    for v, block_cache in zip(self.block_vars, cache['blocks']):
      x, skip, block_cache, block_pending = self.block.apply(
        v, block_cache, x, cond, r, c, method=type(self.block).position
      )
      blocks.append(block_cache)
      pending.append(block_pending)
      if cfg.skip:
        skip_sum = skip if skip_sum is None else skip_sum + skip
    logits = self.model.apply(
      self.variables, skip_sum if cfg.skip else x, method=network.AutoregressiveNetwork.logits_at
    )
    return logits, {**cache, 'blocks': blocks}, pending

  def end_pixel(self, cache: Cache, pending: list[Cache]) -> Cache:
    """The finished pixel's pending states join the caches (e.g. as the left neighbour)."""
    return {**cache, 'blocks': [{**b, **p} for b, p in zip(cache['blocks'], pending)]}

  def _input_row(self, image: Array, r: Array) -> Array:
    """The first layer over the finished row r, one window per column: [N, W, F]."""
    k, zero = self.cfg.first_kernel_size, jnp.zeros((), jnp.int32)
    n, _, _, channels = image.shape
    rows = jax.lax.dynamic_slice(
      image, (zero, r, zero, zero), (n, self.pad + 1, image.shape[2], channels)
    )
    window = lambda c: jax.lax.dynamic_slice(
      rows, (zero, zero, c, zero), (n, self.pad + 1, k, channels)
    )
    input_at = lambda c: self.model.apply(
      self.variables, window(c), method=network.AutoregressiveNetwork.input_at
    )
    return jax.vmap(input_at, out_axes=1)(jnp.arange(self.cfg.image_size))

  def end_row(self, cache: Cache, r: Array) -> Cache:
    """After row r is complete: every block's end_row, for all blocks at once (they are
    independent given the row's inputs, so one vmapped call), or block after block for
    a core whose blocks pass a row on (cores.chains_rows)."""
    cond_row = (
      None
      if self.cond is None
      else jax.lax.dynamic_index_in_dim(self.cond, r, axis=1, keepdims=False)
    )
    method = type(self.block).end_row
    if self.chains_rows:  # Block l reads block l - 1's row: one block after the other.
      blocks, row = [], self._input_row(cache['image'], r)
      for v, block_cache in zip(self.block_vars, cache['blocks']):
        block_cache, row = self.block.apply(v, block_cache, cond_row, row, method=method)
        blocks.append(block_cache)
      return {**cache, 'blocks': blocks}
    end_row = lambda v, block_cache: self.block.apply(v, block_cache, cond_row, method=method)
    blocks = jax.vmap(end_row)(self.stacked_vars, _stack(cache['blocks']))
    return {**cache, 'blocks': _unstack(blocks, self.cfg.num_layers)}


__all__ = ['CachedNetwork', 'network_config']
