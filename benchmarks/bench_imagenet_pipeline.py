"""Peak memory of the ImageNet 64x64 input pipeline per process, against the split size.

  python benchmarks/bench_imagenet_pipeline.py [--sizes=5000,20000] [--steps=700]

For each split size N: generates N train + 1,000 validation 64x64 images as npz batches
(the mirrored layout; imagenet_manual reads both layouts into the same stored format),
prepares them with imagenet_manual (in a separate process), then in a fresh process per
case runs what one training process does with its data: open the dataset, read --steps
batches of 32 with train_batches (700 x 32 = 22,400 images: more than an epoch of the
largest split) and one pass of eval_batches over validation. Printed per case: the peak
resident set size (ru_maxrss) of that process, and its RSS after the imports, before any
data is touched. Two pipelines:

- streamed (config.data.streaming=True, what the ImageNet configs use): batches are read by
  random access, so the peak must not grow with N (the ratio printed should be near 1);
- in memory (streaming=False, the path for MNIST/CIFAR-size data), for contrast: it holds
  the split, 12 KiB per image.
"""

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

IMAGE_SIZE = 64
BATCH = 32
NUM_VALIDATION = 1000
ROWS_PER_FILE = 2500


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB.


def current_rss_mib() -> float:
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def write_npz(folder: pathlib.Path, num_train: int) -> None:
  """num_train + NUM_VALIDATION random 64x64 images as the mirrored npz batches."""
  rng = np.random.default_rng(0)
  row = 3 * IMAGE_SIZE * IMAGE_SIZE
  train_dir = folder / 'Imagenet64_train_npz'
  val_dir = folder / 'Imagenet64_val_npz'
  train_dir.mkdir(parents=True)
  val_dir.mkdir(parents=True)
  for n, start in enumerate(range(0, num_train, ROWS_PER_FILE), start=1):
    rows = min(ROWS_PER_FILE, num_train - start)
    np.savez(
      train_dir / f'train_data_batch_{n}.npz',
      data=rng.integers(0, 256, (rows, row), dtype=np.uint8),
      labels=rng.integers(1, 1001, rows),
    )
  np.savez(
    val_dir / 'val_data.npz',
    data=rng.integers(0, 256, (NUM_VALIDATION, row), dtype=np.uint8),
    labels=rng.integers(1, 1001, NUM_VALIDATION),
  )


def make_config(manual_dir: str, data_dir: str, streaming: bool):
  from pixel_jax import configs  # pylint: disable=g-import-not-at-top

  config = configs.imagenet_config('row_lstm', IMAGE_SIZE)
  config.data.update(manual_dir=manual_dir, data_dir=data_dir, streaming=streaming)
  return config


def child(args) -> dict:
  """One process: prepare, or run the pipeline as a training process would."""
  from pixel_jax import input_pipeline  # pylint: disable=g-import-not-at-top

  config = make_config(args.manual_dir, args.data_dir, args.streaming)
  baseline = current_rss_mib()
  start = time.perf_counter()
  data = input_pipeline.open(config)
  if args.child == 'prepare':
    return {'prepare_s': time.perf_counter() - start, 'peak_mib': peak_rss_mib()}
  images = data.load('train')
  stream = input_pipeline.train_batches(config, images, seed=0, batch_size=BATCH)
  checksum = 0
  for _ in range(args.steps):
    checksum += int(next(stream)[:, 0, 0, 0].sum())
  for batch, mask in input_pipeline.eval_batches(data.load('validation'), 100):
    checksum += int(batch[mask][:, 0, 0, 0].sum())
  return {
    'baseline_mib': baseline,
    'peak_mib': peak_rss_mib(),
    'images_per_s': args.steps * BATCH / (time.perf_counter() - start),
    'num_train': len(images),
    'checksum': checksum,
  }


def run_child(
  mode: str, manual_dir: pathlib.Path, data_dir: pathlib.Path, streaming: bool, steps: int
) -> dict:
  command = [
    sys.executable,
    __file__,
    f'--child={mode}',
    f'--manual_dir={manual_dir}',
    f'--data_dir={data_dir}',
    f'--steps={steps}',
  ]
  if streaming:
    command.append('--streaming')
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  if result.returncode:
    sys.exit(f'{mode} failed:\n{result.stderr[-3000:]}')
  return json.loads(result.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', default='5000,20000')
  parser.add_argument('--steps', type=int, default=700)
  parser.add_argument('--workdir', default='')
  parser.add_argument('--child', default='')
  parser.add_argument('--manual_dir', default='')
  parser.add_argument('--data_dir', default='')
  parser.add_argument('--streaming', action='store_true')
  args = parser.parse_args()
  if args.child:
    print(json.dumps(child(args)))
    return
  workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix='bench_imagenet_'))
  sizes = [int(s) for s in args.sizes.split(',')]
  results = {}
  for num in sizes:
    manual_dir, data_dir = workdir / f'files_{num}', workdir / f'tfds_{num}'
    if not manual_dir.exists():
      write_npz(manual_dir, num)
    prepared = run_child('prepare', manual_dir, data_dir, True, args.steps)
    print(
      f'N={num:6d}: prepared in {prepared["prepare_s"]:.0f} s '
      f'(peak RSS {prepared["peak_mib"]:.0f} MiB)',
      flush=True,
    )
    for streaming in (True, False):
      results[num, streaming] = run_child('run', manual_dir, data_dir, streaming, args.steps)
  print(
    f'\nImageNet {IMAGE_SIZE}x{IMAGE_SIZE} input pipeline, one process, {args.steps} '
    f'train batches of {BATCH} + one validation pass ({NUM_VALIDATION} images):'
  )
  print(f'{"pipeline":10s} ' + ' '.join(f'{f"N={n}":>20s}' for n in sizes) + f' {"ratio":>7s}')
  for streaming, label in ((True, 'streamed'), (False, 'in memory')):
    cells = [results[n, streaming] for n in sizes]
    text = ' '.join(f'{c["peak_mib"]:7.0f} MiB peak RSS' for c in cells)
    ratio = cells[-1]['peak_mib'] / cells[0]['peak_mib']
    print(f'{label:10s} {text} {ratio:7.2f}')
  for streaming, label in ((True, 'streamed'), (False, 'in memory')):
    cells = [results[n, streaming] for n in sizes]
    print(
      f'{label:10s} after imports: '
      + ', '.join(f'{c["baseline_mib"]:.0f} MiB' for c in cells)
      + '; read rate: '
      + ', '.join(f'{c["images_per_s"]:.0f} img/s' for c in cells)
    )


if __name__ == '__main__':
  main()
