"""The layer wavefront: every block of a PixelRNN network in ONE scan (cfg.wavefront).

Layer by layer, an L-layer network runs L scans one after the other. But a block reads
only a bounded part of the block below, so the blocks can advance together, each a fixed
lag behind the one below, in one scan whose steps hold the products of all L blocks
(batched over a layer axis, the blocks' parameters stacked).

Row LSTM (`run_rows`). Block l's row r reads only block l - 1's rows <= r: the 1 x 3
input-to-state kernel and the block's 1x1 output and skip convolutions stay inside their
row, and the state reads the row above. At step s block l handles row s - l, reading
block l - 1's output of that row from step s - 1 (the carry): H + L - 1 sequential steps
instead of L x H.

Diagonal BiLSTM (`run_diagonals`). Both directions scan the W + H - 1 skewed columns
together (models/diagonal_bilstm.py): at column t the left-to-right direction computes
the pixels (r, t - r) and the right-to-left one, on the mirrored image, the pixels
(r, W - 1 - t + r). Block l's output at (r, c) is complete once its left-to-right state at
(r, c) (column r + c) and its right-to-left state at (r - 1, c) (column r + W - 2 - c;
none for r = 0) exist. Block l + 1 reads that output twice: at its column r + c and at its
column r + W - 1 - c. With block l at column s - D l at step s (a lag of D columns per
layer), block l + 1 reads at step t + D (l + 1), t one of its two columns, and needs both
of block l's states from earlier steps:
  left-to-right (r, c), step r + c + D l:  r + c < t + D, at worst t = r + W - 1 - c with
    c = W - 1 (the right end: the first pixel the right-to-left direction reads), where
    it says W - 1 < D;
  right-to-left (r - 1, c), step r + W - 2 - c + D l:  r + W - 2 - c < t + D, at worst
    t = r + c with c = 0, where it says W - 2 < D.
So D = W, the smallest lag that works: the right-to-left direction of block l + 1 starts a
row where block l's left-to-right direction ends it, one step later. The last block
starts at step (L - 1) W and runs W + H - 1 columns: (W + H - 1) + (L - 1) W sequential
steps instead of L (W + H - 1); (2n - 1) + (L - 1) n for an n x n image.

Each block's states and inputs live in full-image buffers carried by the scan (the
left-to-right h, the right-to-left h in mirrored coordinates, the block's input), written
on the diagonals of the block's column and read on the diagonals of the column of the
block above (gathers and scatters by pixel: a diagonal of one direction is not a column
of the other's skewed map). At step s block l + 1's input on its diagonals is block l's
`finish` (output convolution, residual) of what the buffers hold there; block 0 reads the
input layer's map. After the scan every block's output and skip projection are `finish`
of its full buffers, as in the layer-by-layer form. Only the products between the reads
and the writes are recomputed in the backward pass: the buffers are touched by slices of
indices alone, so autodiff stores no copy of them per step.

Both schedules only reorder the work of the full-image form: each block runs its own
methods (`RecurrentBlock.row`, `RecurrentBlock.column`, `RecurrentBlock.finish`: the
layer's own step function, then the block's residual and skip), on the block's own
parameters, so the outputs are the layer-by-layer network's to float32 rounding and the
parameter tree is the same (a checkpoint of either schedule loads into the other). Blocks
whose front has not reached the image yet keep the learned initial state; steps past a
block's end compute values nothing reads.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp

from pixel_jax.models import diagonal_bilstm
from pixel_jax.models import layers
from pixel_jax.models.network_config import NetworkConfig

# The cores whose blocks have the forms the wavefront runs: one row (`initial_row`, `row`)
# or one skewed column (`initial_column`, `column`, `finish`).
WAVEFRONT_CORES = ('row_lstm', 'diagonal_bilstm')


def stacked_block_params(cfg: NetworkConfig, params: Any) -> Any:
  """Every block's parameters stacked on a leading layer axis [L, ...], whether the
  blocks were scanned (already stacked, 'blocks') or unrolled ('block_0', 'block_1', ...)."""
  if cfg.scan_layers:
    return params['blocks']
  blocks = [params[f'block_{i}'] for i in range(cfg.num_layers)]
  return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *blocks)


def steps(cfg: NetworkConfig) -> int:
  """Sequential scan steps of one forward pass: H + L - 1 for the Row LSTM (L x H layer
  by layer), (W + H - 1) + (L - 1) W for the Diagonal BiLSTM (L (W + H - 1))."""
  n, layers_after_first = cfg.image_size, cfg.num_layers - 1
  if cfg.core == 'diagonal_bilstm':
    return (2 * n - 1) + layers_after_first * n
  return n + layers_after_first


def run(
  cfg: NetworkConfig,
  block: Any,
  params_L: Any,
  x_BxHxWxF: jnp.ndarray,
  cond_BxHxWxD: Optional[jnp.ndarray],
) -> tuple[jnp.ndarray, Optional[jnp.ndarray]]:
  """The wavefront of cfg.core's blocks (`run_rows` or `run_diagonals`)."""
  schedule = run_diagonals if cfg.core == 'diagonal_bilstm' else run_rows
  return schedule(block, params_L, x_BxHxWxF, cond_BxHxWxD, cfg.num_layers)


def _per_layer(block: Any, method: str, in_axes: tuple) -> Any:
  """`block.apply(method=...)` on every layer at once: vmapped over the stacked
  parameters (and over the arguments whose `in_axes` entry is 0)."""

  def apply(params, *args):
    return block.apply({'params': params}, *args, method=method)

  return jax.vmap(apply, in_axes=(0, *in_axes))


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

  rows_all = _per_layer(block, 'row', (0, 0, None if cond_SxL is None else 0))
  state0 = _per_layer(block, 'initial_row', (None,))(params_L, rows_HxBxWxF[0])
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


def _gather(map_BxHxWxF: jnp.ndarray, rows_H: jnp.ndarray, cols_H: jnp.ndarray) -> jnp.ndarray:
  """map[:, r, cols[r]] for r in rows: [B, H, F]; positions outside the map read its
  nearest one (values the caller discards)."""
  height, width = map_BxHxWxF.shape[1:3]
  return map_BxHxWxF[:, jnp.clip(rows_H, 0, height - 1), jnp.clip(cols_H, 0, width - 1)]


def _scatter(
  map_NxBxHxWxF: jnp.ndarray, cols_H: jnp.ndarray, values_NxBxHxF: jnp.ndarray
) -> jnp.ndarray:
  """map[..., r, cols[r], :] = values[..., r, :] for every row r whose column is inside
  the map (the others are dropped)."""
  height, width = map_NxBxHxWxF.shape[-3:-1]
  cols_H = jnp.where((cols_H >= 0) & (cols_H < width), cols_H, width)
  update = values_NxBxHxF.astype(map_NxBxHxWxF.dtype)
  return map_NxBxHxWxF.at[..., jnp.arange(height), cols_H, :].set(
    update, mode='drop', unique_indices=True
  )


def _finish_inputs(
  inputs_BxHxWxF: jnp.ndarray, hidden_2xBxHxWxh: jnp.ndarray, cols_H: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """What a block's `finish` reads at the pixels (r, cols[r]): the block's input there and
  the layer's output, the left-to-right h there plus the right-to-left h of the pixel
  above (combine_directions at those pixels; the right-to-left buffer is mirrored)."""
  width = inputs_BxHxWxF.shape[2]
  rows_H = jnp.arange(inputs_BxHxWxF.shape[1])
  h_fwd = _gather(hidden_2xBxHxWxh[0], rows_H, cols_H)
  h_bwd_above = _gather(hidden_2xBxHxWxh[1], rows_H - 1, width - 1 - cols_H)
  h_bwd_above = jnp.where((rows_H >= 1)[None, :, None], h_bwd_above, 0.0)
  return _gather(inputs_BxHxWxF, rows_H, cols_H), h_fwd + h_bwd_above


def run_diagonals(
  block: Any,
  params_L: Any,
  x_BxHxWxF: jnp.ndarray,
  cond_BxHxWxD: Optional[jnp.ndarray],
  num_layers: int,
) -> tuple[jnp.ndarray, Optional[jnp.ndarray]]:
  """The blocks of `block` (an unbound Diagonal BiLSTM block with `initial_column`,
  `column` and `finish`) on the stacked parameters `params_L`, as a wavefront over skewed
  columns, block l at column s - W l at step s.

  Returns the last block's output [B, H, W, F] and the sum of every block's skip
  projection (None when the blocks return no skip), exactly what the layer-by-layer
  stack returns.
  """
  n_layers, (_, height, width, _) = num_layers, x_BxHxWxF.shape
  n_steps = (width + height - 1) + (n_layers - 1) * width
  layer_L, rows_H = jnp.arange(n_layers), jnp.arange(height)
  params_below = jax.tree_util.tree_map(lambda a: a[:-1], params_L)
  cond_axis = None if cond_BxHxWxD is None else 0
  columns_all = _per_layer(block, 'column', (0, 0, 0, 0, cond_axis, cond_axis))
  finish_all = _per_layer(block, 'finish', (0, 0))
  inputs_below = jax.vmap(_finish_inputs)
  gather_cond = jax.vmap(_gather, in_axes=(None, None, 0))

  @layers.recomputed_in_backward
  def compute(state, t_L, x0_fwd, x0_bwd, below_fwd, below_bwd, cond_fwd_L, cond_bwd_L):
    """Every block's input on its column's diagonals (block 0: the input layer's; block
    l: block l - 1's output) and its state after the column."""
    x_fwd_L = jnp.concatenate([x0_fwd[None], finish_all(params_below, *below_fwd)[0]])
    x_bwd_L = jnp.concatenate([x0_bwd[None], finish_all(params_below, *below_bwd)[0]])
    state = columns_all(params_L, state, t_L, x_fwd_L, x_bwd_L, cond_fwd_L, cond_bwd_L)
    return x_fwd_L, x_bwd_L, state

  def step(carry, s):
    inputs_LxBxHxWxF, hidden_Lx2xBxHxWxh, state = carry
    t_L = s - width * layer_L
    # The columns of each block's two diagonals: (r, t - r) and (r, W - 1 - t + r), the
    # latter (r, t - r) of the mirrored image.
    fwd_LxH = t_L[:, None] - rows_H[None]
    bwd_LxH = width - 1 - fwd_LxH
    # Blocks 0..L-2's buffers at the diagonals of the block above (its columns are W less).
    below_fwd, below_bwd = (
      jax.tree_util.tree_map(
        lambda a: a[:-1], inputs_below(inputs_LxBxHxWxF, hidden_Lx2xBxHxWxh, cols_LxH)
      )
      for cols_LxH in (fwd_LxH - width, bwd_LxH + width)
    )
    x0_fwd = _gather(inputs_LxBxHxWxF[0], rows_H, fwd_LxH[0])
    x0_bwd = _gather(inputs_LxBxHxWxF[0], rows_H, bwd_LxH[0])
    cond_fwd_L = cond_bwd_L = None
    if cond_BxHxWxD is not None:
      cond_fwd_L = gather_cond(cond_BxHxWxD, rows_H, fwd_LxH)
      cond_bwd_L = gather_cond(cond_BxHxWxD, rows_H, bwd_LxH)
    x_fwd_L, x_bwd_L, state = compute(
      state, t_L, x0_fwd, x0_bwd, below_fwd, below_bwd, cond_fwd_L, cond_bwd_L
    )
    inputs_LxBxHxWxF = jax.vmap(_scatter)(inputs_LxBxHxWxF, fwd_LxH, x_fwd_L)
    inputs_LxBxHxWxF = jax.vmap(_scatter)(inputs_LxBxHxWxF, bwd_LxH, x_bwd_L)
    # Both directions' h at (r, t - r) of their own (the second: mirrored) image.
    hidden_Lx2xBxHxWxh = jax.vmap(_scatter)(hidden_Lx2xBxHxWxh, fwd_LxH, state[0])
    return (inputs_LxBxHxWxF, hidden_Lx2xBxHxWxh, state), None

  inputs0 = jnp.zeros((n_layers, *x_BxHxWxF.shape), x_BxHxWxF.dtype).at[0].set(x_BxHxWxF)
  hidden0 = jnp.zeros((n_layers, 2, *x_BxHxWxF.shape[:3], block.cfg.hidden_channels), jnp.float32)
  state0 = _per_layer(block, 'initial_column', (None,))(params_L, x_BxHxWxF[:, :, 0])
  (inputs_L, hidden_L, _), _ = jax.lax.scan(step, (inputs0, hidden0, state0), jnp.arange(n_steps))
  # Every block's output and skip projection from its full buffers, as layer by layer.
  hidden_L = jax.vmap(diagonal_bilstm.combine_directions)(hidden_L[:, 0], hidden_L[:, 1])
  outs_L, skips_L = finish_all(params_L, inputs_L, hidden_L)
  return outs_L[-1], None if skips_L is None else skips_L.sum(axis=0)


__all__ = [
  'WAVEFRONT_CORES',
  'run',
  'run_diagonals',
  'run_rows',
  'stacked_block_params',
  'steps',
]
