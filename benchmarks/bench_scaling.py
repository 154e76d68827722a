"""How a training step's time grows with image size, depth and batch; nn.scan vs unrolled.

  python benchmarks/bench_scaling.py                     # the size and depth sweeps, every model
  python benchmarks/bench_scaling.py --sweeps=depth --models=row_lstm --steps=3
  python benchmarks/bench_scaling.py --sweeps=batch --out=batch.json      # images/s vs batch
  python benchmarks/bench_scaling.py --sweeps=batch --models=pixelcnn --batches=16,32

Small, CPU-feasible networks (h = 16, batch 16, one binary channel, out width 32) so that
the shape of each curve is visible in minutes:
* size:  image side 16, 32, 64 at 4 layers, layers unrolled (scan_layers=False, what the
  MNIST experiment configs use). The Row LSTM's scan has n steps and the Diagonal
  BiLSTM's 2n - 1, each over O(n) pixels, so both grow ~n^2 like PixelCNN's convolutions;
  what differs is the per-step overhead multiplying the number of sequential steps.
* depth: 1, 4, 12 layers at side 32, each with scan_layers True and False; the same rows
  give the scan-vs-unrolled comparison (step time and compile time).
* batch: images/s of the training step of each MNIST experiment config as shipped
  (experiments/mnist_rowlstm.py 7 x 16, mnist_pixelcnn.py 15 x 16, mnist_diagbilstm.py
  7 x 16: residual and skip connections, output width 32, layers unrolled) at batch 16, 32,
  64, 128, 256; not in the default --sweeps (minutes per model on a 2-core CPU).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_models  # pylint: disable=g-import-not-at-top,wrong-import-position
import bench_precision  # pylint: disable=g-import-not-at-top,wrong-import-position
import run_all  # pylint: disable=g-import-not-at-top,wrong-import-position

IMAGE_SIZES = (16, 32, 64)
DEPTHS = (1, 4, 12)
BATCHES = (16, 32, 64, 128, 256)
# The batch sweep's network of each model: its MNIST experiment config.
MNIST_EXPERIMENTS = {
  'row_lstm': 'mnist_rowlstm',
  'pixelcnn': 'mnist_pixelcnn',
  'diagonal_bilstm': 'mnist_diagbilstm',
}
SIZE_SWEEP_LAYERS = 4
DEPTH_SWEEP_SIZE = 32


def measure(
  model: str, image_size: int, layers: int, scan_layers: bool, steps: int, batch: int = 16
) -> dict:
  """Compile and step time of one small binary network (MNIST widths, any size/depth)."""
  config = bench_models.make_config(
    model, 'mnist', batch, num_layers=layers, image_size=image_size, scan_layers=scan_layers
  )
  row = dict(
    model=model,
    image_size=image_size,
    layers=layers,
    scan_layers=scan_layers,
    hidden=config.model.hidden_channels,
    batch=batch,
  )
  row.update(timed(config, batch, steps))
  return row


def timed(config, batch: int, steps: int) -> dict:
  """The training step of `config` at `batch`, measured: the figures every sweep's row has."""
  r = bench_models.measure(config, steps)
  return dict(
    compile_s=r['compile_s'],
    step_s=r['step_s'],
    step_s_min=r['step_s_min'],
    steps_timed=steps,
    images_per_s=batch / r['step_s'],
    temp_bytes=r['memory'].get('temp'),
  )


def size_sweep(models, steps: int, sizes=IMAGE_SIZES, layers: int = SIZE_SWEEP_LAYERS):
  for model in models:
    for n in sizes:
      yield measure(model, n, layers, False, steps)


def depth_sweep(
  models, steps: int, depths=DEPTHS, image_size: int = DEPTH_SWEEP_SIZE, scan_options=(True, False)
):
  """Every depth with each scan_layers option: the depth curve and the scan comparison."""
  for model in models:
    for layers in depths:
      for scan in scan_options:
        yield measure(model, image_size, layers, scan, steps)


def batch_sweep(models, steps: int, batches=BATCHES):
  """Training-step images/s of each model's MNIST experiment config at each batch size."""
  for model in models:
    if model not in MNIST_EXPERIMENTS:
      sys.exit(f'bench_scaling: the batch sweep has MNIST configs of {sorted(MNIST_EXPERIMENTS)}')
    experiment = MNIST_EXPERIMENTS[model]
    for batch in batches:
      config = bench_precision.load_config(
        os.path.join(bench_precision.REPO, 'experiments', f'{experiment}.py')
      )
      config.train.batch_size = batch
      yield dict(
        model=model,
        config=experiment,
        layers=config.model.num_layers,
        hidden=config.model.hidden_channels,
        batch=batch,
        **timed(config, batch, steps),
      )


def print_batch_row(row: dict) -> None:
  print(
    f'{row["config"]:18} batch={row["batch"]:4d} compile {row["compile_s"]:7.2f} s  '
    f'step {1e3 * row["step_s"]:9.1f} ms  {row["images_per_s"]:8.1f} images/s',
    flush=True,
  )


def print_row(row: dict) -> None:
  print(
    f'{row["model"]:16} n={row["image_size"]:3d} L={row["layers"]:3d} '
    f'scan={str(row["scan_layers"]):5} compile {row["compile_s"]:7.2f} s  '
    f'step {1e3 * row["step_s"]:9.1f} ms',
    flush=True,
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--models', default=','.join(bench_models.models.MODEL_NAMES))
  parser.add_argument('--sweeps', default='size,depth')
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--batches', default=','.join(map(str, BATCHES)), help='batch sweep')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  models = args.models.split(',')
  result = {}
  if 'size' in args.sweeps:
    result['size'] = []
    for row in size_sweep(models, args.steps):
      print_row(row)
      result['size'].append(row)
  if 'depth' in args.sweeps:
    result['depth'] = []
    for row in depth_sweep(models, args.steps):
      print_row(row)
      result['depth'].append(row)
  if 'batch' in args.sweeps:
    result['batch'] = []
    for row in batch_sweep(models, args.steps, [int(b) for b in args.batches.split(',')]):
      print_batch_row(row)
      result['batch'].append(row)
  if args.out:
    result['conditions'] = run_all.conditions()
    with open(args.out, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  main()
