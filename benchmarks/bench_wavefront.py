"""The layer wavefront (config.model.wavefront) against layer by layer: sequential scan
steps and training step time, per model, the settings timed in alternation.

  python benchmarks/bench_wavefront.py                      # MNIST size, 30 rounds
  python benchmarks/bench_wavefront.py --sizes=mnist,cifar --rounds=10

For each model with a wavefront (models.WAVEFRONT_CORES) both settings are compiled once
(bench_models.CompiledStep: the training loop's own step, RMSProp with clipping, batch 16,
scanned layers), then timed one step each in turn, ABBA, for `--rounds` rounds, so both
see the same load. Sequential steps are counted in the step's jaxpr: every scan's length
(times the steps of the scans inside its body), forward and backward passes together.
Models without a wavefront get their layer-by-layer row only.
Prints the median step time of each setting, the median of the per-round ratios
wavefront / layer by layer (< 1: the wavefront is faster) and the load average.
"""

import argparse
import os
import statistics

import jax
import numpy as np

import bench_models
from pixel_jax import models


def _subjaxprs(eqn):
  """The jaxprs inside one equation's parameters (scan bodies, jit calls, custom rules)."""
  for value in eqn.params.values():
    for v in value if isinstance(value, (list, tuple)) else (value,):
      if isinstance(v, jax.extend.core.ClosedJaxpr):
        yield v.jaxpr
      elif isinstance(v, jax.extend.core.Jaxpr):
        yield v


def sequential_steps(jaxpr) -> int:
  """Scan steps run one after the other by `jaxpr`: each scan's length times the steps of
  its body (at least one), summed over the scans that run in turn."""
  total = 0
  for eqn in jaxpr.eqns:
    inner = sum(sequential_steps(j) for j in _subjaxprs(eqn))
    if eqn.primitive.name == 'scan':
      total += eqn.params['length'] * max(1, inner)
    else:
      total += inner
  return total


def scan_steps_of(step: bench_models.CompiledStep, jitted) -> int:
  """Sequential scan steps of one training step (forward, backward, update)."""
  closed = jax.make_jaxpr(jitted)(step.state, step.images, None)
  return sequential_steps(closed.jaxpr)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', default='mnist')
  parser.add_argument('--models', default='row_lstm,diagonal_bilstm')
  parser.add_argument('--rounds', type=int, default=30)
  parser.add_argument('--batch', type=int, default=16)
  args = parser.parse_args()
  print(f'devices: {jax.devices()}; load {os.getloadavg()[0]:.1f}')
  print(
    f'{"size":6} {"model":16} {"wavefront":>9} {"scan steps":>10} {"step ms":>9} '
    f'{"ratio":>6}  ratio quartiles'
  )
  for size in args.sizes.split(','):
    for name in args.models.split(','):
      settings = (False, True) if name in models.WAVEFRONT_CORES else (False,)
      steps, counts = {}, {}
      for wavefront in settings:
        config = bench_models.make_config(name, size, args.batch, wavefront=wavefront)
        jitted, _, _ = bench_models.build_step(config)
        steps[wavefront] = bench_models.CompiledStep(config)
        counts[wavefront] = scan_steps_of(steps[wavefront], jitted)
      times: dict[bool, list[float]] = {w: [] for w in settings}
      for i in range(args.rounds):
        for wavefront in settings if i % 2 == 0 else settings[::-1]:
          times[wavefront] += steps[wavefront].run(1)
      ratio = ''
      if len(settings) == 2:
        ratios = [b / a for a, b in zip(times[False], times[True])]
        q = statistics.quantiles(ratios, n=4)
        ratio = f'{statistics.median(ratios):6.3f}  {q[0]:.3f}..{q[2]:.3f}'
      for wavefront in settings:
        print(
          f'{size:6} {name:16} {str(wavefront):>9} {counts[wavefront]:10d} '
          f'{1e3 * float(np.median(times[wavefront])):9.1f} {ratio if wavefront else ""}',
          flush=True,
        )
      print(f'(load {os.getloadavg()[0]:.1f})', flush=True)


if __name__ == '__main__':
  main()
