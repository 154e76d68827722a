"""Where a training step's time goes: the compiled step's kernels, from a jax.profiler trace.

  python benchmarks/step_breakdown.py                           # the MNIST experiment networks
  python benchmarks/step_breakdown.py --models=row_lstm --network=bench --steps=8

Networks (--network): `experiment` times the shipped MNIST experiment configs
(experiments/mnist_{rowlstm,diagbilstm,pixelcnn}.py: layers unrolled, skip connections);
`bench` the MNIST-size network of bench_models.make_config (layers under nn.scan, no skip),
the one `make bench` and interleaved_ab.py time. Batch 16, the training loop's own step
(bench_models.build_step), traced for --steps calls after two untimed ones.

Every kernel XLA:CPU ran (a trace event naming an HLO instruction) is sorted into

  matrix products   dot and YNNPACK-fused products (`ynn_fusion`)
  saved values      dynamic-update-slice / dynamic-slice kernels: a scan storing each
                    step's values for the backward pass, and reading them back
  zero fills        broadcasts of a constant and their copies: the buffers a scan stacks
                    its per-step values into, filled before the loop (on CPU, JAX's scan
                    starts them at zero; each loop gets its own copy)
  copies            every other copy or transpose kernel
  elementwise       every other fusion (activations, adds, concatenations, pads, ...)

and counted inside a scan or outside one, by the instruction's place in the JAX program
(its op_name metadata runs through a while body). That includes the scans XLA unrolled (the
Diagonal BiLSTM's short band chunks) and, in the bench network, everything under nn.scan.
Printed per step: milliseconds and kernel launches per category, the sum of kernel time
over the wall time (how many cores the kernels kept busy), and the costliest kernels.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import statistics
import tempfile
import time

import jax

import bench_models
import bench_sampling
import run_all

CATEGORIES = ('matrix products', 'saved values', 'zero fills', 'copies', 'elementwise')


def read_trace(path: str) -> list[dict]:
  """The complete ('X') events of a perfetto trace file (perfetto_trace.json.gz)."""
  with gzip.open(path, 'rt') as f:
    return [e for e in json.load(f)['traceEvents'] if e.get('ph') == 'X' and 'dur' in e]


def instructions(hlo_text: str) -> dict[str, tuple[str, str]]:
  """{instruction name: (its definition, its op_name)} of a compiled module's HLO text."""
  out = {}
  for match in re.finditer(r'^\s*(?:ROOT )?%([\w.\-]+) = (.*)$', hlo_text, re.M):
    op_name = re.search(r'op_name="([^"]*)"', match.group(2))
    out[match.group(1)] = (match.group(2), op_name.group(1) if op_name else '')
  return out


def category(name: str, definition: str) -> str:
  if name.startswith(('ynn_fusion', 'dot')):
    return 'matrix products'
  if 'dynamic-update-slice' in name or 'dynamic-slice' in name:
    return 'saved values'
  if re.search(r'\bcopy\(%wrapped_broadcast', definition) or re.search(
    r'fusion\(%constant[\w.]*\).*calls=%wrapped_broadcast', definition
  ):
    return 'zero fills'
  if name.startswith('copy') or 'transpose' in name:
    return 'copies'
  return 'elementwise'


def breakdown(events: list[dict], hlo: dict[str, dict], steps: int) -> dict:
  """Per-step figures of the kernels in `events`; `hlo`: {module name: instructions()}."""
  table = {c: {'in scans ms': 0.0, 'outside ms': 0.0, 'launches': 0} for c in CATEGORIES}
  by_op: collections.Counter = collections.Counter()
  for e in events:
    args = e.get('args', {})
    name, module = args.get('hlo_op'), args.get('hlo_module')
    if name is None or name.startswith(('while', 'conditional', 'call')):
      continue  # Control flow: its body's kernels are counted themselves.
    definition, op_name = hlo[module][name]
    row = table[category(name, definition)]
    ms = e['dur'] / 1e3 / steps
    row['in scans ms' if '/while/body/' in f'/{op_name}/' else 'outside ms'] += ms
    row['launches'] += 1
    by_op[f'{module}/{name}'] += ms
  for row in table.values():
    row['launches'] = round(row['launches'] / steps)
  return {
    'table': table,
    'kernel_ms': sum(r['in scans ms'] + r['outside ms'] for r in table.values()),
    'top': by_op.most_common(6),
  }


def print_breakdown(title: str, result: dict, wall_ms: float) -> None:
  print(f'\n{title}')
  busy = result['kernel_ms'] / wall_ms
  print(
    f'  step {wall_ms:.1f} ms wall; kernels {result["kernel_ms"]:.1f} ms ({busy:.2f} cores busy)'
  )
  print(f'  {"":16s} {"in scans ms":>12s} {"outside ms":>11s} {"launches":>9s}')
  for name, row in result['table'].items():
    print(f'  {name:16s} {row["in scans ms"]:12.1f} {row["outside ms"]:11.1f} {row["launches"]:9d}')
  print('  costliest kernels (ms per step): ' + ', '.join(f'{n} {t:.1f}' for n, t in result['top']))


def trace_step(config, steps: int) -> tuple[list[dict], dict[str, dict], float]:
  """(the trace events of `steps` training steps of `config`, {module name: its
  instructions()}, median wall ms per step)."""
  step, state, images = bench_models.build_step(config)
  holder = [state]

  def call():
    holder[0], metrics = step(holder[0], images, None)
    jax.block_until_ready(metrics)

  for _ in range(2):  # Compiles, then one warm call.
    call()
  # The step's compiled calls (compiled again: the same program, the same names).
  if step.split:
    loss, backward = step.forward(holder[0].params, images, None)
    lowered = [
      step.forward.lower(holder[0].params, images, None),
      step.update.lower(holder[0], loss, backward),
    ]
  else:
    lowered = [step.one_call.lower(holder[0], images, None)]
  texts = [low.compile().as_text() for low in lowered]
  hlo = {re.search(r'HloModule (\S+?),', t).group(1): instructions(t) for t in texts}
  with tempfile.TemporaryDirectory(prefix='step_breakdown_') as logdir:
    times = []
    jax.profiler.start_trace(logdir, create_perfetto_trace=True)
    for _ in range(steps):
      start = time.perf_counter()
      call()
      times.append(time.perf_counter() - start)
    jax.profiler.stop_trace()
    (path,) = glob.glob(os.path.join(logdir, '**', 'perfetto_trace.json.gz'), recursive=True)
    return read_trace(path), hlo, 1e3 * statistics.median(times)


def make_config(model: str, network: str):
  if network == 'bench':
    return bench_models.make_config(model, 'mnist', 16)
  config = bench_sampling.make_config(model, 'mnist', None)
  config.train.batch_size = 16
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--models', default='row_lstm,diagonal_bilstm,pixelcnn')
  parser.add_argument('--network', choices=('experiment', 'bench'), default='experiment')
  parser.add_argument('--steps', type=int, default=5, help='Steps traced per model.')
  args = parser.parse_args()
  c = run_all.conditions()
  print(
    f'{args.network} networks, batch 16, {args.steps} traced steps each; {c["time_utc"]}, '
    f'{c["cpu_count"]} cores of {c["cpu"]}, jax {c["jax"]} on {c["device_kind"]}; '
    f'load {c["load_average"][0]:.1f}'
  )
  for model in args.models.split(','):
    events, hlo, wall_ms = trace_step(make_config(model, args.network), args.steps)
    print_breakdown(model, breakdown(events, hlo, args.steps), wall_ms)
  print(f'\nload {os.getloadavg()[0]:.1f} after')


if __name__ == '__main__':
  main()
