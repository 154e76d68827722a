"""float32 vs bfloat16 mixed precision: validation NLL and step time after the same training.

  python benchmarks/bench_precision.py                          # 300 steps of mnist_rowlstm
  python benchmarks/bench_precision.py --config=experiments/mnist_pixelcnn.py --steps=100

config.model.dtype='bfloat16' keeps parameters and optimizer state in float32 and computes
the convolutions and state matmuls in bfloat16, with the LSTM cell and the logits in
float32 (models/layers.py). Both runs use the same config, seed, data order and number of
steps through pixel_jax.train.train_and_evaluate into fresh temporary workdirs, so the NLL
difference is the precision's alone. Step time, twice: the median over the logging windows
after the first (which holds compilation) of each run's own images/s, and (steadier on a
shared machine) the median of the jitted step timed with the two dtypes in alternation.
"""

import argparse
import importlib.util
import json
import os
import sys
import tempfile

import numpy as np

from pixel_jax import train

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_models  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(path: str):
  spec = importlib.util.spec_from_file_location('experiment_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def train_once(
  config_path: str, dtype: str, steps: int, idx_dir: str = '', log_every: int = 25
) -> dict:
  """Trains one run with config.model.dtype = dtype; returns its NLLs and timing."""
  config = load_config(config_path)
  config.model.dtype = dtype
  config.train.num_steps = steps
  config.train.log_every = log_every
  config.train.eval_every = steps
  config.train.checkpoint_every = steps
  config.train.sample_every = 0
  config.data.idx_dir = idx_dir
  with tempfile.TemporaryDirectory(prefix=f'bench_precision_{dtype}_') as workdir:
    _, summary = train.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      records = [json.loads(line) for line in f]
  rates = [r['images_per_s'] for r in records if 'images_per_s' in r][1:]
  step_s = config.train.batch_size / float(np.median(rates)) if rates else float('nan')
  return dict(
    dtype=dtype,
    config=os.path.relpath(config_path, REPO),
    steps=steps,
    seed=config.seed,
    batch=config.train.batch_size,
    unit=summary['unit'],
    initial_train_loss=summary['initial_train_loss'],
    train_loss=summary['train_loss'],
    eval_loss=summary['eval_loss'],
    test_loss=summary.get('test_loss'),
    step_s=step_s,
    images_per_s=config.train.batch_size / step_s,
    train_time_s=summary['train_time_s'],
    data=summary['data'],
  )


def interleaved_step_s(config_path: str, rounds: int = 6, steps: int = 5) -> dict:
  """Median step seconds per dtype, timing the two dtypes in alternation.

  On a shared machine the load drifts over minutes; alternating short bursts of each
  dtype exposes both to the same drift, which two back-to-back training runs do not.
  """
  compiled = {}
  for dtype in ('float32', 'bfloat16'):
    config = load_config(config_path)
    config.model.dtype = dtype
    compiled[dtype] = bench_models.CompiledStep(config)
  times: dict[str, list[float]] = {dtype: [] for dtype in compiled}
  for _ in range(rounds):
    for dtype, step in compiled.items():
      times[dtype] += step.run(steps)
  return {dtype: float(np.median(t)) for dtype, t in times.items()}


def run(config_path: str, steps: int, idx_dir: str = '') -> list[dict]:
  rows = [train_once(config_path, dtype, steps, idx_dir) for dtype in ('float32', 'bfloat16')]
  interleaved = interleaved_step_s(config_path)
  for row in rows:
    row['step_s_interleaved'] = interleaved[row['dtype']]
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default=os.path.join(REPO, 'experiments/mnist_rowlstm.py'))
  parser.add_argument('--steps', type=int, default=300)
  parser.add_argument(
    '--idx_dir', default='', help='MNIST IDX folder: also report the real 10k test set NLL.'
  )
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  rows = run(args.config, args.steps, args.idx_dir)
  for r in rows:
    print(
      f'{r["dtype"]:9} validation {r["eval_loss"]:.3f} {r["unit"]}  '
      f'step {1e3 * r["step_s"]:.1f} ms in training, '
      f'{1e3 * r["step_s_interleaved"]:.1f} ms interleaved',
      flush=True,
    )
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(rows, f, indent=1)


if __name__ == '__main__':
  main()
