"""Achieved FLOP/s, utilisation and peak memory of one training step, per model and size.

  python benchmarks/bench_utilisation.py --model=row_lstm --size=mnist      # one JSON row
  python benchmarks/bench_utilisation.py --model=pixelcnn --size=cifar --steps=3

Why these methods (docs/results.md repeats them):
* FLOPs. XLA's cost_analysis of a compiled step counts a while-loop body ONCE, not times
  its trip count, so the compiled step of a scanned model under-reports its work by up to
  the scan length (rows H for the Row LSTM, W + H - 1 diagonals for the Diagonal BiLSTM,
  and the depth again under nn.scan). We therefore count FLOPs on a second lowering of the
  same step with config.model.scan_layers=False and every jax.lax.scan fully unrolled
  (unroll=True), so the HLO holds no loop at all, and take `Lowered.cost_analysis()`
  (XLA's HloCostAnalysis on the unoptimised module; no compile needed). As an independent
  check we count the matrix-product FLOPs of the step's jaxpr (2*M*N*K per dot_general,
  scan bodies multiplied by their `length`): the XLA total must exceed it only by the
  elementwise work. The timed step is the ordinary one (the config's scan_layers).
* Peak FLOP/s of this machine: a 2048 x 2048 float32 jnp.dot timed in the same process,
  right after the step, so both see the same load. Utilisation = achieved / that.
* Memory bandwidth of this machine: y = x + 1 over 256 MiB, same process, for the
  memory-bound share of the step (docs/results.md, "what bounds utilisation").
* Memory: compiled.memory_analysis() gives the step's argument, output, alias (donated)
  and temporary buffer sizes; peak = argument + output - alias + temp. We also give the
  process's peak RSS growth from just before compilation to just after the timed steps
  (it includes XLA's compiler working memory), which is why every row runs in its own
  subprocess when run_all.py drives it.
"""

import argparse
import contextlib
import json
import os
import sys
import time
from typing import Any, Iterator

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_models  # pylint: disable=g-import-not-at-top,wrong-import-position


def matmul_flops_per_s(n: int = 2048, repeats: int = 30, dtype: Any = jnp.float32) -> float:
  """Best-of-`repeats` FLOP/s of one n x n x n jnp.dot: the machine's reference peak.

  Best, not median: the reference should be what the hardware can do, so that the
  utilisation of a step is not flattered by a slow matmul measurement on a shared machine.
  """
  a = jax.random.normal(jax.random.key(1), (n, n), dtype)
  b = jax.random.normal(jax.random.key(2), (n, n), dtype)
  dot = jax.jit(jnp.dot)
  dot(a, b).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    dot(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2.0 * n**3 / best


def memory_bytes_per_s(num_floats: int = 64 * 2**20, repeats: int = 10) -> float:
  """Best bytes/s of y = x + 1 over a 256 MiB float32 array (one read, one write).

  The reference for memory-bound work: activations saved in the forward pass are written
  once and read back by the backward pass at this rate at best.
  """
  x = jnp.zeros((num_floats,), jnp.float32)
  # Donated, so each call reuses the buffer: no fresh 256 MiB allocation (page faults)
  # inside the timing.
  add = jax.jit(lambda x: x + 1.0, donate_argnums=0)
  x = add(x).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    x = add(x).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * 4 * num_floats / best


def small_matmul_flops_per_s(m: int, k: int, n: int, batch: int = 1, repeats: int = 20) -> float:
  """Median FLOP/s of a [batch, m, k] x [batch, k, n] product: one scan step's matmul."""
  a = jax.random.normal(jax.random.key(1), (batch, m, k), jnp.float32)
  b = jax.random.normal(jax.random.key(2), (batch, k, n), jnp.float32)
  dot = jax.jit(lambda a, b: jnp.einsum('bmk,bkn->bmn', a, b))
  dot(a, b).block_until_ready()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    dot(a, b).block_until_ready()
    times.append(time.perf_counter() - t0)
  return 2.0 * batch * m * k * n / float(np.median(times))


@contextlib.contextmanager
def unrolled_scans() -> Iterator[None]:
  """Within the block every jax.lax.scan is traced fully unrolled (no while loop in HLO).

  The models call jax.lax.scan through the module attribute at trace time, so patching
  the attribute is enough; the scan's transpose keeps unroll=True for the backward pass.
  """
  original = jax.lax.scan

  def scan(f, init, xs=None, length=None, reverse=False, unroll=1, **kwargs):
    del unroll
    return original(f, init, xs, length=length, reverse=reverse, unroll=True, **kwargs)

  jax.lax.scan = scan
  try:
    yield
  finally:
    jax.lax.scan = original


def _dot_flops(eqn) -> float:
  """2 * batch * M * N * K of one dot_general equation."""
  lhs, rhs = (v.aval.shape for v in eqn.invars)
  (lc, rc), (lb, rb) = eqn.params['dimension_numbers']
  prod = lambda dims: float(np.prod(dims, dtype=np.float64))
  lhs_free = [d for i, d in enumerate(lhs) if i not in lc and i not in lb]
  rhs_free = [d for i, d in enumerate(rhs) if i not in rc and i not in rb]
  return (
    2.0 * prod([lhs[i] for i in lb]) * prod([lhs[i] for i in lc]) * prod(lhs_free) * prod(rhs_free)
  )


def jaxpr_dot_flops(jaxpr) -> float:
  """Matrix-product FLOPs of a (closed) jaxpr, scan bodies counted `length` times."""
  jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
  total = 0.0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      total += _dot_flops(eqn)
    elif eqn.primitive.name == 'while':
      raise ValueError('A while loop has no static trip count; cannot count its FLOPs.')
    multiplier = eqn.params.get('length', 1) if eqn.primitive.name == 'scan' else 1
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      total += multiplier * jaxpr_dot_flops(sub)
  return total


def step_flops(config) -> dict:
  """FLOPs of one training step, loops unrolled (see the module docstring).

  Counted on the CPU backend whatever the device: the count is the emitted program's, not
  the hardware's, and on GPU `Lowered.cost_analysis()` returns None.
  """
  with jax.default_device(jax.devices('cpu')[0]):
    return _step_flops(config)


def _step_flops(config) -> dict:
  config = config.copy_and_resolve_references()
  config.model.scan_layers = False
  step, state, images = bench_models.build_step(config, devices=jax.devices('cpu')[:1])
  with unrolled_scans():
    traced = step.trace(state, images, None)
  lowered = traced.lower()
  cost = lowered.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  # Both checks guard the method: no loop left whose body XLA would count once, and the
  # XLA total covers every matrix product of the step (scan bodies times their length).
  loops = lowered.as_text().count('stablehlo.while')
  row = dict(
    flops=float(cost['flops']),
    transcendentals=float(cost.get('transcendentals', 0.0)),
    dot_flops=jaxpr_dot_flops(traced.jaxpr),
  )
  if loops or row['flops'] < row['dot_flops']:
    raise AssertionError(
      f'FLOP count is not trustworthy: {loops} while loops left, '
      f'XLA {row["flops"]:.4g} < matmul-only {row["dot_flops"]:.4g}.'
    )
  return row


def scan_steps(config) -> int:
  """Sequential recurrence steps of one layer: H rows, W + H - 1 diagonals, 0 for convs."""
  n = config.data.image_size
  return {'row_lstm': n, 'diagonal_bilstm': 2 * n - 1}.get(config.model.name, 0)


def scan_matmul(config) -> tuple[int, int, int, int] | None:
  """(batch, M, K, N) of the state-to-state product one scan step runs."""
  b, n, h = config.train.batch_size, config.data.image_size, config.model.hidden_channels
  if config.model.name == 'row_lstm':
    return (1, b * n, 3 * h, 4 * h)
  if config.model.name == 'diagonal_bilstm':
    return (2, b * n, h, 8 * h)
  return None


def run(model: str, size: str, steps: int, scan_layers: bool, batch: int = 16) -> dict:
  """One row: timing, memory, FLOPs and utilisation of `model` at `size`."""
  config = bench_models.make_config(model, size, batch, scan_layers=scan_layers)
  row = dict(
    model=model,
    size=size,
    layers=config.model.num_layers,
    hidden=config.model.hidden_channels,
    image_size=config.data.image_size,
    channels=config.data.num_channels,
    levels=config.data.num_levels,
    batch=batch,
    scan_layers=scan_layers,
    dtype=config.model.dtype,
  )
  row.update(bench_models.measure(config, steps))
  row['images_per_s'] = batch / row['step_s']
  row.update(step_flops(config))
  row['achieved_flop_s'] = row['flops'] / row['step_s']
  row['matmul_flop_s'] = matmul_flops_per_s()
  row['utilisation'] = row['achieved_flop_s'] / row['matmul_flop_s']
  row['memory_bytes_per_s'] = memory_bytes_per_s()
  row['scan_steps_per_layer'] = scan_steps(config)
  shape = scan_matmul(config)
  if shape:
    row['scan_matmul_shape'] = list(shape)
    row['scan_matmul_flop_s'] = small_matmul_flops_per_s(
      shape[1], shape[2], shape[3], batch=shape[0]
    )
    # Fwd + bwd each walk every layer's scan once, strictly in order.
    row['sequential_steps'] = 2 * row['layers'] * row['scan_steps_per_layer']
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', default='row_lstm')
  parser.add_argument('--size', default='mnist', choices=tuple(bench_models.SIZES))
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--scan_layers', type=int, default=1)
  args = parser.parse_args()
  row = run(args.model, args.size, args.steps, bool(args.scan_layers), args.batch)
  print(json.dumps(row))


if __name__ == '__main__':
  main()
