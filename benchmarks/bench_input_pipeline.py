"""Input pipeline throughput against what training consumes (it must never be the bottleneck).

  python benchmarks/bench_input_pipeline.py [--steps=2000] [--data_dir=/tmp/tfds]

For each offline dataset and binarization: images/s of input_pipeline.train_batches alone
and with the batch placed on the ('data',) mesh as training does (sharding.
shard_global_batch), batch 16. Beside it, the training step's own consumption: images/s of
the jitted Row LSTM step at the MNIST size (bench_models.measure: median step), timed in
the same run.
The bundled TFDS builders are prepared into --data_dir on first use (seconds).
"""

import argparse
import tempfile
import time

import jax

import bench_models
from pixel_jax import configs
from pixel_jax import input_pipeline
from pixel_jax import sharding


def pipeline_rate(config, images, steps, mesh=None):
  stream = input_pipeline.train_batches(config, images, seed=0, batch_size=16)
  batch = next(stream)  # Warm-up (first permutation).
  start = time.perf_counter()
  for _ in range(steps):
    batch = next(stream)
    if mesh is not None:
      jax.block_until_ready(sharding.shard_global_batch(batch, mesh))
  return steps * 16 / (time.perf_counter() - start)


def training_rate(steps=10):
  config = bench_models.make_config('row_lstm', 'mnist', 16, scan_layers=False)
  return 16 / bench_models.measure(config, steps)['step_s']


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=2000)
  parser.add_argument('--data_dir', default='')
  args = parser.parse_args()
  data_dir = args.data_dir or tempfile.mkdtemp(prefix='tfds_')
  mesh = sharding.make_mesh()
  consumed = training_rate()
  print(
    f'training consumes {consumed:.0f} images/s (Row LSTM, MNIST size, batch 16, '
    f'{jax.device_count()} device(s))'
  )
  print(
    f'{"dataset":16s} {"binarization":12s} {"pipeline img/s":>15s} '
    f'{"+ mesh placement":>17s} {"x training":>11s}'
  )
  cases = [  # (dataset, binarization, levels, channels, image size)
    ('mnist_bundled', 'static', 2, 1, 28),
    ('mnist_bundled', 'dynamic', 2, 1, 28),
    ('photos_bundled', 'none', 256, 3, 32),
  ]
  for name, binarization, levels, channels, size in cases:
    config = configs.base_config()
    config.data.update(
      name=name,
      data_dir=data_dir,
      binarization=binarization,
      num_levels=levels,
      num_channels=channels,
      image_size=size,
    )
    images = input_pipeline.open(config).load('train')
    alone = pipeline_rate(config, images, args.steps)
    placed = pipeline_rate(config, images, args.steps, mesh)
    print(f'{name:16s} {binarization:12s} {alone:15.0f} {placed:17.0f} {placed / consumed:10.0f}x')


if __name__ == '__main__':
  main()
