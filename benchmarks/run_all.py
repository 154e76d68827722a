"""`make bench`: every benchmark of docs/results.md, as tables, docs/benchmarks.json and plots.

  python benchmarks/run_all.py                               # everything (~25 min, 2-core CPU)
  python benchmarks/run_all.py --sections=models,scaling     # some sections; others are kept
  python benchmarks/run_all.py --quick --out=/tmp/b.json     # smoke test: tiny sizes, ~6 min
  python benchmarks/run_all.py --print_only                  # the stored tables, no timing

Sections (each one also stands alone as its own script):
* models:    bench_utilisation.py per model at the paper's MNIST size (7 layers, h = 16,
             28x28x1 binary, batch 16; PixelCNN also 7 layers here) and CIFAR size (12
             layers, h = 128, 32x32x3, 256 levels, output width 1024, batch 16; PixelCNN 15):
             images/s, step and compile time, memory, FLOPs and utilisation. Each row runs in
             its own subprocess so its peak-RSS figure is its own.
* scaling:   bench_scaling.py: step time vs image size and depth, nn.scan vs unrolled.
* sampling:  naive vs cached sampler images/s at both sizes (bench_sampling.py).
* precision: bench_precision.py: float32 vs bfloat16, 300 steps of mnist_rowlstm.
Every section records the conditions it ran under (time, load average, CPU, devices), since
on a shared machine the load changes the timings. plot.py then redraws docs/figures/.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SECTIONS = ('models', 'scaling', 'sampling', 'precision')
MODELS = ('row_lstm', 'diagonal_bilstm', 'pixelcnn')
# The experiment configs' setting: MNIST configs unroll the layers, CIFAR configs scan them.
SCAN_LAYERS = {'mnist': False, 'cifar': True}


def conditions() -> dict:
  """What a timing depends on besides the code: when, on what, under which load."""
  import jax  # pylint: disable=g-import-not-at-top

  with open('/proc/cpuinfo') as f:
    cpu = next((line.split(':', 1)[1].strip() for line in f if 'model name' in line), '?')
  return dict(
    time_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
    load_average=list(os.getloadavg()),
    cpu=cpu,
    cpu_count=os.cpu_count(),
    jax=jax.__version__,
    devices=[str(d) for d in jax.devices()],
    python=platform.python_version(),
    device_kind=jax.devices()[0].device_kind,
  )


def run_models(quick: bool, steps: int) -> list[dict]:
  """One subprocess per (size, model): bench_utilisation.py prints one JSON row."""
  rows = []
  sizes = ('mnist',) if quick else ('mnist', 'cifar')
  for size in sizes:
    for model in MODELS:
      n = steps if size == 'mnist' else max(2, steps // 4)
      cmd = [
        sys.executable,
        os.path.join(HERE, 'bench_utilisation.py'),
        f'--model={model}',
        f'--size={size}',
        f'--steps={n}',
        f'--scan_layers={int(SCAN_LAYERS[size])}',
      ]
      load = os.getloadavg()[0]
      out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
      row = json.loads(out.strip().splitlines()[-1])
      row['load_average_1min'] = [load, os.getloadavg()[0]]
      rows.append(row)
      print(format_model_row(row), flush=True)
  return rows


def format_model_row(r: dict) -> str:
  mem = r['memory'].get('peak', 0) / 2**20
  return (
    f'| {r["size"]} | {r["model"]} | {r["layers"]} | {r["images_per_s"]:.1f} | '
    f'{1e3 * r["step_s"]:.0f} | {r["compile_s"]:.1f} | {mem:.0f} | '
    f'{r["rss_growth_bytes"] / 2**20:.0f} | {r["flops"] / 1e9:.2f} | '
    f'{r["achieved_flop_s"] / 1e9:.2f} | {r["matmul_flop_s"] / 1e9:.1f} | '
    f'{100 * r["utilisation"]:.1f}% |'
  )


MODEL_HEADER = (
  '| size | model | layers | train images/s | step ms | compile s | '
  'XLA peak MiB | RSS growth MiB | GFLOP/step | achieved GFLOP/s | '
  'matmul GFLOP/s | utilisation |\n|' + '---|' * 12
)


def run_scaling(quick: bool, steps: int) -> dict:
  import bench_scaling  # pylint: disable=g-import-not-at-top

  if quick:
    size = list(bench_scaling.size_sweep(MODELS, 1, sizes=(8, 16), layers=1))
    depth = list(bench_scaling.depth_sweep(MODELS, 1, depths=(1, 2), image_size=8))
  else:
    size, depth = [], []
    for row in bench_scaling.size_sweep(MODELS, steps):
      bench_scaling.print_row(row)
      size.append(row)
    for row in bench_scaling.depth_sweep(MODELS, steps):
      bench_scaling.print_row(row)
      depth.append(row)
  return dict(
    size=size,
    depth=depth,
    size_sweep_layers=size[0]['layers'],
    depth_sweep_image_size=depth[0]['image_size'],
  )


def run_sampling(quick: bool) -> list[dict]:
  """bench_sampling.py's bench_one with its own defaults (its docstring gives the nets)."""
  import bench_sampling  # pylint: disable=g-import-not-at-top

  args = argparse.Namespace(
    batch=16,
    naive_steps=2 if quick else 32,
    repeats=1 if quick else 2,
    cifar_layers=4,
    cifar_hidden=16,
    cifar_out_hidden=64,
  )
  rows = []
  for size in ('mnist',) if quick else ('mnist', 'cifar'):
    for model in MODELS:
      row = bench_sampling.bench_one(model, size, args)
      rows.append(row)
      print(format_sampling_row(row), flush=True)
  return rows


def format_sampling_row(r: dict) -> str:
  shape = 'x'.join(map(str, r['shape']))
  return (
    f'| {shape} | {r["model"]} | {r["layers"]}x{r["hidden"]} | '
    f'{r["naive_images_per_s"]:.3g} | {r["cached_images_per_s"]:.3g} | '
    f'{r["cached_s_per_batch"]:.2f} | {r["speedup"]:.0f}x |'
  )


SAMPLING_HEADER = (
  '| image | model | layers x h | naive images/s (extrapolated) | '
  'cached images/s | cached s per batch of 16 | cached / naive |\n|' + '---|' * 7
)


def run_precision(quick: bool) -> list[dict]:
  import bench_precision  # pylint: disable=g-import-not-at-top

  config = os.path.join(REPO, 'experiments/mnist_rowlstm.py')
  return bench_precision.run(config, 60 if quick else 300)


def conditions_line(section: dict) -> str:
  c = section.get('conditions', {})
  load = c.get('load_average', [float('nan')] * 3)
  after = c.get('load_average_after', [float('nan')] * 3)
  return (
    f'_Measured {c.get("time_utc", "?")} on {c.get("cpu_count", "?")} cores of '
    f'{c.get("cpu", "?")}, JAX {c.get("jax", "?")} on {", ".join(c.get("devices", []))}; '
    f'1-minute load average {load[0]:.1f} before, {after[0]:.1f} after; '
    f'{c.get("wall_s", float("nan")) / 60:.1f} min; {_accelerator(c)}._'
  )


def _accelerator(c: dict) -> str:
  """The section's accelerator in words ('CPU only' when the devices were CPUs)."""
  devices = c.get('devices', [])
  if devices and not all(d.startswith('cpu') or d.startswith('TFRT_CPU') for d in devices):
    return f'accelerator: {c.get("device_kind", devices[0])}'
  return 'CPU only, no accelerator'


def _model_tables(section: dict) -> str:
  lines = ['Training step, one row per model and size:', '', MODEL_HEADER]
  lines += [format_model_row(r) for r in section['rows']]
  lines += [
    '',
    'FLOP count and what bounds the step:',
    '',
    '| size | model | GFLOP, compiled step (loops counted once: WRONG) | GFLOP, '
    'loops unrolled | of which matmul | sequential scan steps (fwd+bwd) | step ms / '
    'sequential steps | scan-step matmul (batch, M, K, N) | its GFLOP/s | temp MiB | '
    'memory GB/s | 2 x temp / memory rate, ms |',
    '|' + '---|' * 12,
  ]
  for r in section['rows']:
    seq, shape = r.get('sequential_steps'), r.get('scan_matmul_shape')
    per_step = f'{1e3 * r["step_s"] / seq:.2f}' if seq else '-'
    shape_text = str(tuple(shape)) if shape else '-'
    scan_rate = f'{r["scan_matmul_flop_s"] / 1e9:.0f}' if shape else '-'
    bw = r.get('memory_bytes_per_s', float('nan'))
    lines.append(
      f'| {r["size"]} | {r["model"]} | {r["xla_flops_compiled"] / 1e9:.1f} | '
      f'{r["flops"] / 1e9:.1f} | {100 * r["dot_flops"] / r["flops"]:.1f}% | '
      f'{seq or "-"} | {per_step} | {shape_text} | {scan_rate} | '
      f'{r["memory"].get("temp", 0) / 2**20:.0f} | {bw / 1e9:.1f} | '
      f'{2e3 * r["memory"].get("temp", 0) / bw:.0f} |'
    )
  return '\n'.join(lines)


def _scaling_tables(section: dict) -> str:
  sizes = sorted({r['image_size'] for r in section['size']})
  depths = sorted({r['layers'] for r in section['depth']})
  models = list(dict.fromkeys(r['model'] for r in section['size'] + section['depth']))
  lines = [
    f'Step time (ms) vs image side n ({section["size_sweep_layers"]} layers, unrolled):',
    '',
    '| model | ' + ' | '.join(f'n={n}' for n in sizes) + ' |',
    '|' + '---|' * (len(sizes) + 1),
  ]
  for m in models:
    cells = {r['image_size']: r for r in section['size'] if r['model'] == m}
    lines.append(f'| {m} | ' + ' | '.join(f'{1e3 * cells[n]["step_s"]:.1f}' for n in sizes) + ' |')
  n = section['depth_sweep_image_size']
  lines += [
    '',
    f'Depth and nn.scan vs unrolled layers ({n}x{n}x1): step ms and compile s:',
    '',
    '| model | layers | step ms, scan | step ms, unrolled | compile s, scan | '
    'compile s, unrolled | faster step |',
    '|' + '---|' * 7,
  ]
  for m in models:
    for d in depths:
      pair = {r['scan_layers']: r for r in section['depth'] if r['model'] == m and r['layers'] == d}
      if len(pair) != 2:
        continue
      faster = 'scan' if pair[True]['step_s'] < pair[False]['step_s'] else 'unrolled'
      lines.append(
        f'| {m} | {d} | {1e3 * pair[True]["step_s"]:.1f} | '
        f'{1e3 * pair[False]["step_s"]:.1f} | {pair[True]["compile_s"]:.1f} | '
        f'{pair[False]["compile_s"]:.1f} | {faster} |'
      )
  return '\n'.join(lines)


def _sampling_tables(section: dict) -> str:
  return '\n'.join([SAMPLING_HEADER] + [format_sampling_row(r) for r in section['rows']])


def _precision_tables(section: dict) -> str:
  lines = [
    '| dtype | steps | validation NLL | train loss (last step) | step ms (training '
    'run) | step ms (interleaved timing) |',
    '|' + '---|' * 6,
  ]
  for r in section['rows']:
    lines.append(
      f'| {r["dtype"]} | {r["steps"]} | {r["eval_loss"]:.3f} {r["unit"]} | '
      f'{r["train_loss"]:.3f} | {1e3 * r["step_s"]:.1f} | '
      f'{1e3 * r.get("step_s_interleaved", float("nan")):.1f} |'
    )
  return '\n'.join(lines)


TABLES = {
  'models': _model_tables,
  'scaling': _scaling_tables,
  'sampling': _sampling_tables,
  'precision': _precision_tables,
}


def section_tables(result: dict) -> dict[str, str]:
  """Markdown per section: its tables and the line saying under which conditions."""
  return {
    name: fn(result[name]) + '\n\n' + conditions_line(result[name])
    for name, fn in TABLES.items()
    if result.get(name)
  }


def print_tables(result: dict) -> None:
  for name, text in section_tables(result).items():
    print(f'\n### {name}\n\n{text}')


def update_doc(result: dict, path: str) -> None:
  """Replaces the text between <!-- bench:NAME --> and <!-- /bench:NAME --> in `path`.

  So the tables in docs/results.md are always the ones in docs/benchmarks.json.
  """
  with open(path) as f:
    text = f.read()
  for name, table in section_tables(result).items():
    begin, end = f'<!-- bench:{name} -->', f'<!-- /bench:{name} -->'
    if begin in text and end in text:
      head, rest = text.split(begin, 1)
      text = head + begin + '\n' + table + '\n' + end + rest.split(end, 1)[1]
  with open(path, 'w') as f:
    f.write(text)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sections', default=','.join(SECTIONS))
  parser.add_argument('--out', default=os.path.join(REPO, 'docs/benchmarks.json'))
  parser.add_argument('--figures', default=os.path.join(REPO, 'docs/figures'))
  parser.add_argument('--steps', type=int, default=8)
  parser.add_argument('--quick', action='store_true', help='tiny sizes: a smoke test')
  parser.add_argument('--no_plots', action='store_true')
  parser.add_argument(
    '--print_only',
    action='store_true',
    help='measure nothing: print the tables of the stored --out JSON',
  )
  parser.add_argument(
    '--doc',
    default=os.path.join(REPO, 'docs/results.md'),
    help="rewrite this file's <!-- bench:SECTION --> tables ('' skips)",
  )
  args = parser.parse_args()
  result = {}
  if os.path.exists(args.out):  # Sections not rerun keep their last figures.
    with open(args.out) as f:
      result = json.load(f)
  if args.print_only:
    print_tables(result)
    if args.doc:
      update_doc(result, args.doc)
    return
  result['about'] = (
    'Written by benchmarks/run_all.py; see docs/results.md for methods. '
    'Each section records the conditions it ran under.'
  )
  for section in args.sections.split(','):
    if section not in SECTIONS:
      raise SystemExit(f'Unknown section {section!r}; use some of {SECTIONS}.')
    print(f'== {section}', flush=True)
    before, t0 = conditions(), time.perf_counter()
    if section == 'models':
      data = {'rows': run_models(args.quick, args.steps), 'scan_layers': SCAN_LAYERS}
    elif section == 'scaling':
      data = run_scaling(args.quick, max(2, args.steps // 2))
    elif section == 'sampling':
      data = {'rows': run_sampling(args.quick)}
    else:
      data = {'rows': run_precision(args.quick)}
    data['conditions'] = before
    data['conditions']['load_average_after'] = list(os.getloadavg())
    data['conditions']['wall_s'] = time.perf_counter() - t0
    data['conditions']['quick'] = args.quick
    result[section] = data
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:  # After every section: a late failure loses nothing.
      json.dump(result, f, indent=1)
    if args.doc and os.path.exists(args.doc):
      update_doc(result, args.doc)
  print_tables(result)
  if not args.no_plots:
    import plot  # pylint: disable=g-import-not-at-top

    plot.plot_all(result, args.figures)
  print(f'\nWrote {args.out}' + ('' if args.no_plots else f' and {args.figures}/*.png'))


if __name__ == '__main__':
  main()
