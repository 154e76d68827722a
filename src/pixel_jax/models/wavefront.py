"""The layer wavefront: every block of a Row LSTM network in ONE scan (cfg.wavefront).

Block l's row r reads only block l - 1's rows <= r: the Row LSTM's input-to-state kernel
(1 x 3) and the block's 1x1 output and skip convolutions stay inside their row, and the
state reads the row above. So instead of L scans of H rows, one after the other, the
blocks advance together as a diagonal front through (row, layer): at step s, block l
handles row s - l, reading block l - 1's output of that row from step s - 1 (the carry).
H + L - 1 sequential steps instead of L x H, and each step's products are those of all L
blocks at once (batched over the layer axis, the blocks' parameters stacked).

The schedule only reorders the work of the full-image form: each block runs its own
one-row method (`RecurrentBlock.row`: the layer's row step, the same step function as its
scan, then the block's residual and skip), on the block's own parameters, so the outputs
are the layer-by-layer network's to float32 rounding and the parameter tree is the same
(a checkpoint of either schedule loads into the other). Blocks whose front has not reached
row 0 yet (s < l) keep the learned initial state; steps past a block's last row compute
values nothing reads.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp

from pixel_jax.models import layers
from pixel_jax.models.network_config import NetworkConfig

# The cores whose blocks have the one-row form the wavefront runs (`initial_row`, `row`).
WAVEFRONT_CORES = ('row_lstm',)


def stacked_block_params(cfg: NetworkConfig, params: Any) -> Any:
  """Every block's parameters stacked on a leading layer axis [L, ...], whether the
  blocks were scanned (already stacked, 'blocks') or unrolled ('block_0', 'block_1', ...)."""
  if cfg.scan_layers:
    return params['blocks']
  blocks = [params[f'block_{i}'] for i in range(cfg.num_layers)]
  return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *blocks)


def steps(cfg: NetworkConfig) -> int:
  """Sequential scan steps of one forward pass: H + L - 1 (L x H layer by layer)."""
  return cfg.image_size + cfg.num_layers - 1


def run_rows(
  block: Any,
  params_L: Any,
  x_BxHxWxF: jnp.ndarray,
  cond_BxHxWxD: Optional[jnp.ndarray],
  num_layers: int,
) -> tuple[jnp.ndarray, Optional[jnp.ndarray]]:
  """The blocks of `block` (an unbound block module with `initial_row` and `row`) on the
  stacked parameters `params_L`, as a wavefront over rows.

  Returns the last block's output [B, H, W, F] and the sum of every block's skip
  projection (None when the blocks return no skip), exactly what the layer-by-layer
  stack returns.
  """
  n_layers, height = num_layers, x_BxHxWxF.shape[1]
  n_steps = height + n_layers - 1
  rows_HxBxWxF = jnp.swapaxes(x_BxHxWxF, 0, 1)
  # Block 0 reads the input layer's row s; rows past the image feed nothing used.
  first_SxBxWxF = jnp.pad(rows_HxBxWxF, ((0, n_layers - 1),) + ((0, 0),) * 3)
  layer_L = jnp.arange(n_layers)
  if cond_BxHxWxD is None:
    cond_SxL = None
  else:  # Block l reads the conditioning map's row s - l.
    row_SxL = jnp.clip(jnp.arange(n_steps)[:, None] - layer_L[None], 0, height - 1)
    cond_SxL = jnp.swapaxes(cond_BxHxWxD, 0, 1)[row_SxL]  # [S, L, B, W, D]

  def apply_row(params, carry, x_BxWxF, cond_BxWxD):
    return block.apply({'params': params}, carry, x_BxWxF, cond_BxWxD, method='row')

  rows_all = jax.vmap(apply_row, in_axes=(0, 0, 0, None if cond_SxL is None else 0))
  initial = jax.vmap(lambda p: block.apply({'params': p}, rows_HxBxWxF[0], method='initial_row'))
  state0 = initial(params_L)
  outs0 = jnp.zeros((n_layers, *rows_HxBxWxF.shape[1:]), x_BxHxWxF.dtype)

  @layers.recomputed_in_backward
  def step(carry, inputs):
    state, outs_LxBxWxF = carry
    s, first_BxWxF, cond_L = inputs
    x_L = jnp.concatenate([first_BxWxF[None], outs_LxBxWxF[:-1]])
    new_state, (outs_LxBxWxF, skips_L) = rows_all(params_L, state, x_L, cond_L)
    started_L = layer_L <= s
    state = jax.tree_util.tree_map(
      lambda new, old: jnp.where(started_L.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
      new_state,
      state,
    )
    return (state, outs_LxBxWxF), (outs_LxBxWxF[-1], skips_L)

  xs = (jnp.arange(n_steps), first_SxBxWxF, cond_SxL)
  _, (last_SxBxWxF, skips_SxL) = jax.lax.scan(step, (state0, outs0), xs)
  # The last block finishes row r at step r + L - 1, block l at step r + l.
  out = jnp.swapaxes(last_SxBxWxF[n_layers - 1 :], 0, 1)
  if skips_SxL is None:
    return out, None
  skip_sum = skips_SxL[:height, 0]
  for layer in range(1, n_layers):
    skip_sum = skip_sum + skips_SxL[layer : layer + height, layer]
  return out, jnp.swapaxes(skip_sum, 0, 1)


__all__ = ['WAVEFRONT_CORES', 'run_rows', 'stacked_block_params', 'steps']
