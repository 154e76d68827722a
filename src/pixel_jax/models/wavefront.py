"""The layer wavefront: every block of a PixelRNN network in ONE scan (cfg.wavefront).

Layer by layer, an L-layer network runs L scans one after the other. But a block reads
only a bounded part of the block below, so the blocks can advance together, each a fixed
lag behind the one below, in one scan whose steps hold the products of every block with
work at that step (batched over a layer axis, the blocks' parameters stacked).

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

With that lag a block spans fewer than 2W steps, so at most two blocks (for a square
image) hold real pixels at any step: only those run, on their parameters taken from the
stack by index. Their inputs and states live in full-image buffers carried by the scan
(the block's input, the left-to-right h, the right-to-left h in mirrored coordinates),
for the running blocks and the one below them: a ring of 3 slots. A block writes them on
the diagonals of its column and the block above reads them on the diagonals of its own
(gathers and scatters by pixel: a diagonal of one direction is not a column of the
other's skewed map). Block l + 1's input there is block l's `finish` (output
convolution, residual) of what the buffers hold, whose skip projection on the
left-to-right diagonal (every pixel once) joins a running sum; block 0 reads the input
layer's map, and the last block's output and skip come from its buffers after the scan.
Only the products between the reads and the writes are recomputed in the backward pass:
the buffers are touched by index alone, so autodiff stores no copy of them per step.

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

from pixel_jax.models import causal
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


def _gather(
  ring_NxBxHxWxF: jnp.ndarray, slot_K: jnp.ndarray, rows_H: jnp.ndarray, cols_KxH: jnp.ndarray
) -> jnp.ndarray:
  """ring[slot[k], :, r, cols[k, r]] for every slot k and row r: [K, B, H, F]; positions
  outside the map read its nearest one (values the caller discards)."""
  height, width = ring_NxBxHxWxF.shape[2:4]
  rows_KxH = jnp.broadcast_to(jnp.clip(rows_H, 0, height - 1), cols_KxH.shape)
  cols_KxH = jnp.clip(cols_KxH, 0, width - 1)
  return jnp.swapaxes(ring_NxBxHxWxF[slot_K[:, None], :, rows_KxH, cols_KxH], 1, 2)


def _scatter(
  ring_NxBxHxWxF: jnp.ndarray,
  slot_K: jnp.ndarray,
  cols_KxH: jnp.ndarray,
  values_KxBxHxF: jnp.ndarray,
) -> jnp.ndarray:
  """ring[slot[k], :, r, cols[k, r]] = values[k, :, r] for every k and row r whose column
  is inside the map (the others are dropped); no position is named twice.

  Written as adding the difference to what the position holds, so that the backward pass
  reads a cotangent before it updates it in place: a plain set leaves the two unordered
  and XLA copies the whole ring twice per step. A position is exactly `values` where it
  held zero or the same value, and to float32 rounding where it held an earlier block's
  value (a reused slot)."""
  height, width = ring_NxBxHxWxF.shape[2:4]
  cols_KxH = jnp.where((cols_KxH >= 0) & (cols_KxH < width), cols_KxH, width)
  rows_KxH = jnp.broadcast_to(jnp.arange(height), cols_KxH.shape)
  update = jnp.swapaxes(values_KxBxHxF, 1, 2).astype(ring_NxBxHxWxF.dtype)
  index = (slot_K[:, None], slice(None), rows_KxH, cols_KxH)
  old = ring_NxBxHxWxF.at[index].get(mode='fill', fill_value=0, unique_indices=True)
  return ring_NxBxHxWxF.at[index].add(update - old, mode='drop', unique_indices=True)


def _finish_inputs(
  inputs_RxBxHxWxF: jnp.ndarray,
  hidden_2RxBxHxWxh: jnp.ndarray,
  slot_K: jnp.ndarray,
  cols_KxH: jnp.ndarray,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """What `finish` of the block in ring slot slot[k] reads at the pixels (r, cols[k, r]):
  the block's input there and the layer's output, the left-to-right h there plus the
  right-to-left h of the pixel above (combine_directions at those pixels; the
  right-to-left h is kept mirrored, in ring row 2 slot + 1, the left-to-right one in
  2 slot)."""
  width = inputs_RxBxHxWxF.shape[3]
  rows_H = jnp.arange(inputs_RxBxHxWxF.shape[2])
  h_fwd = _gather(hidden_2RxBxHxWxh, 2 * slot_K, rows_H, cols_KxH)
  h_bwd_above = _gather(hidden_2RxBxHxWxh, 2 * slot_K + 1, rows_H - 1, width - 1 - cols_KxH)
  h_bwd_above = jnp.where((rows_H >= 1)[:, None], h_bwd_above, 0.0)
  return _gather(inputs_RxBxHxWxF, slot_K, rows_H, cols_KxH), h_fwd + h_bwd_above


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

  A block spans W + H - 1 columns, so at step s only the K = ceil((W + H - 1) / W) blocks
  s // W - k (k < K; 2 for a square image) hold real pixels: block s // W - k at column
  s % W + k W. Only those run, their parameters and states taken from the stacked ones
  by index. The buffers of the blocks read or written at a step (those K blocks and the
  one below the lowest) live in a ring of K + 1 slots, block b in slot b % (K + 1). Block
  l + 1 computes block l's output where it reads it (`finish`), and the skip projection
  on its left-to-right diagonal (every pixel once) joins a running sum; the last block's
  output and skip come from its buffers after the scan.

  Returns the last block's output [B, H, W, F] and the sum of every block's skip
  projection (None when the blocks return no skip), exactly what the layer-by-layer
  stack returns.
  """
  n_layers, (_, height, width, _) = num_layers, x_BxHxWxF.shape
  length = width + height - 1  # Skewed columns per block.
  n_steps = length + (n_layers - 1) * width
  n_slots = -(-length // width)
  n_ring = n_slots + 1
  slot_K, rows_H = jnp.arange(n_slots), jnp.arange(height)
  # Block 0's input on its column t's two diagonals, at step t.
  x0_fwd_S, x0_bwd_S = (
    jnp.pad(jnp.moveaxis(causal.skew(x), 2, 0), ((0, n_steps - length),) + ((0, 0),) * 3)
    for x in (x_BxHxWxF, jnp.flip(x_BxHxWxF, axis=2))
  )
  cond_axis = None if cond_BxHxWxD is None else 0
  columns_all = _per_layer(block, 'column', (0, 0, 0, 0, cond_axis, cond_axis))
  finish_all = _per_layer(block, 'finish', (0, 0))

  def take(tree_L, block_K):
    """The blocks' parameters or states, stacked on the layer axis, at `block_K`."""
    return jax.tree_util.tree_map(lambda a: a[jnp.clip(block_K, 0, n_layers - 1)], tree_L)

  def gather_cond(cols_KxH):
    if cond_BxHxWxD is None:
      return None
    cols_KxH = jnp.clip(cols_KxH, 0, width - 1)
    return jnp.moveaxis(cond_BxHxWxD[:, jnp.broadcast_to(rows_H, cols_KxH.shape), cols_KxH], 0, 1)

  @layers.recomputed_in_backward
  def compute(state_K, block_K, t_K, x0_fwd, x0_bwd, below_fwd, below_bwd, cond_fwd, cond_bwd):
    """The running blocks' inputs on their column's diagonals (block 0: the input
    layer's; block b: block b - 1's output), the skip projection of that output on the
    left-to-right diagonal, and the blocks' states after the column."""
    params_below = take(params_L, block_K - 1)
    out_fwd, skip_fwd = finish_all(params_below, *below_fwd)
    out_bwd, _ = finish_all(params_below, *below_bwd)
    first = (block_K == 0)[:, None, None, None]
    x_fwd_K = jnp.where(first, x0_fwd[None], out_fwd)
    x_bwd_K = jnp.where(first, x0_bwd[None], out_bwd)
    state_K = columns_all(
      take(params_L, block_K), state_K, t_K, x_fwd_K, x_bwd_K, cond_fwd, cond_bwd
    )
    return x_fwd_K, x_bwd_K, skip_fwd, state_K

  def step(carry, xs):
    inputs_RxBxHxWxF, hidden_2RxBxHxWxh, skip_sum, state_L = carry
    s, x0_fwd, x0_bwd = xs
    block_K = s // width - slot_K
    t_K = s % width + width * slot_K
    running_K = (block_K >= 0) & (block_K < n_layers) & (t_K < length)
    # The columns of each block's two diagonals: (r, t - r) and (r, W - 1 - t + r), the
    # latter (r, t - r) of the mirrored image.
    fwd_KxH = t_K[:, None] - rows_H[None]
    bwd_KxH = width - 1 - fwd_KxH
    below_K = (block_K - 1) % n_ring
    below_fwd = _finish_inputs(inputs_RxBxHxWxF, hidden_2RxBxHxWxh, below_K, fwd_KxH)
    below_bwd = _finish_inputs(inputs_RxBxHxWxF, hidden_2RxBxHxWxh, below_K, bwd_KxH)
    x_fwd_K, x_bwd_K, skip_K, new_state_K = compute(
      take(state_L, block_K),
      block_K,
      t_K,
      x0_fwd,
      x0_bwd,
      below_fwd,
      below_bwd,
      gather_cond(fwd_KxH),
      gather_cond(bwd_KxH),
    )
    # Only the running blocks write (the others' columns lie outside the map).
    write_KxH = jnp.where(running_K[:, None], fwd_KxH, -1)
    own_K = block_K % n_ring
    # One write of both diagonals (a pixel on both, the centre column of an odd width,
    # is written once).
    write_bwd_KxH = jnp.where(running_K[:, None] & (bwd_KxH != fwd_KxH), bwd_KxH, -1)
    inputs_RxBxHxWxF = _scatter(
      inputs_RxBxHxWxF,
      jnp.concatenate([own_K, own_K]),
      jnp.concatenate([write_KxH, write_bwd_KxH]),
      jnp.concatenate([x_fwd_K, x_bwd_K]),
    )
    # Both directions' h at (r, t - r) of their own (the second: mirrored) image.
    h_2K = new_state_K[0].reshape(2 * n_slots, *new_state_K[0].shape[2:])
    hidden_2RxBxHxWxh = _scatter(
      hidden_2RxBxHxWxh,
      (2 * own_K[:, None] + jnp.arange(2)[None]).reshape(-1),
      jnp.repeat(write_KxH, 2, axis=0),
      h_2K,
    )
    if skip_sum is not None:  # Block b - 1's skip, where block b reads it (b >= 1).
      cols_KxH = jnp.where((block_K >= 1)[:, None], write_KxH, -1)
      cols_KxH = jnp.where((cols_KxH >= 0) & (cols_KxH < width), cols_KxH, width)
      skip_sum = skip_sum.at[:, jnp.broadcast_to(rows_H, cols_KxH.shape), cols_KxH].add(
        jnp.moveaxis(skip_K, 0, 1).astype(skip_sum.dtype), mode='drop'
      )
    state_L = jax.tree_util.tree_map(
      lambda old, new: old.at[jnp.where(running_K, block_K, n_layers + slot_K)].set(
        new, mode='drop', unique_indices=True
      ),
      state_L,
      new_state_K,
    )
    return (inputs_RxBxHxWxF, hidden_2RxBxHxWxh, skip_sum, state_L), None

  hidden = block.cfg.hidden_channels
  inputs0 = jnp.zeros((n_ring, *x_BxHxWxF.shape), x_BxHxWxF.dtype)
  hidden0 = jnp.zeros((2 * n_ring, *x_BxHxWxF.shape[:3], hidden), jnp.float32)
  state0 = _per_layer(block, 'initial_column', (None,))(params_L, x_BxHxWxF[:, :, 0])
  last = jax.tree_util.tree_map(lambda a: a[-1], params_L)
  skip_shape = jax.eval_shape(
    lambda: block.apply({'params': last}, x_BxHxWxF, hidden0[0], method='finish')[1]
  )
  skip0 = None if skip_shape is None else jnp.zeros(skip_shape.shape, skip_shape.dtype)
  xs = (jnp.arange(n_steps), x0_fwd_S, x0_bwd_S)
  carry0 = (inputs0, hidden0, skip0, state0)
  (inputs_R, hidden_2R, skip_sum, _), _ = jax.lax.scan(step, carry0, xs)
  # The last block's output and skip projection from its buffers, as layer by layer.
  slot = (n_layers - 1) % n_ring
  h = diagonal_bilstm.combine_directions(hidden_2R[2 * slot], hidden_2R[2 * slot + 1])
  out, skip = block.apply({'params': last}, inputs_R[slot], h, method='finish')
  return out, None if skip is None else skip_sum + skip


__all__ = [
  'WAVEFRONT_CORES',
  'run',
  'run_diagonals',
  'run_rows',
  'stacked_block_params',
  'steps',
]
