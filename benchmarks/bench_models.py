"""Training step time and compile time of each network at the paper's sizes.

  python benchmarks/bench_models.py                       # MNIST and CIFAR sizes
  python benchmarks/bench_models.py --sizes=mnist --steps=20 --out=bench.json

MNIST size: 7 layers, h = 16, 28x28x1, 2 levels, batch 16. CIFAR size: 12 layers,
h = 128, 32x32x3, 256 levels, output width 1024, batch 16. The step is what training runs:
`train.make_train_step` (forward, then backward and update; the state donated) with the
config's optimiser (`optim.make_optimizer`: RMSProp with clipping), on a uint8 batch placed
on the ('data',) mesh. Every benchmark that times a training step does it through `measure` (or
`CompiledStep`, to time several configs in alternation).
"""

import argparse
import json
import os
import resource
import time
from typing import Any, Optional

import jax
import numpy as np

from pixel_jax import configs
from pixel_jax import models
from pixel_jax import optim
from pixel_jax import sharding
from pixel_jax import train
from pixel_jax import train_state

SIZES = {
  'mnist': dict(layers=7, hidden=16, size=28, channels=1, levels=2, out_hidden=32),
  'cifar': dict(layers=12, hidden=128, size=32, channels=3, levels=256, out_hidden=1024),
}
PIXELCNN_LAYERS = {'mnist': 7, 'cifar': 15}


def make_config(
  model,
  size,
  batch,
  num_layers=None,
  image_size=None,
  dtype='float32',
  scan_layers=True,
  wavefront=False,
):
  s = SIZES[size]
  config = configs.base_config()
  config.model.name = model
  config.model.num_layers = num_layers or (
    PIXELCNN_LAYERS[size] if model == 'pixelcnn' else s['layers']
  )
  config.model.hidden_channels = s['hidden']
  config.model.out_hidden_channels = s['out_hidden']
  config.model.dtype = dtype
  config.model.scan_layers = scan_layers
  config.model.wavefront = wavefront
  config.data.image_size = image_size or s['size']
  config.data.num_channels = s['channels']
  config.data.num_levels = s['levels']
  config.train.batch_size = batch
  return config


def build_step(config, devices: Optional[list[Any]] = None):
  """(the training loop's jitted step, a fresh train state, one batch) for `config`.

  The batch is random uint8 levels of the config's shape, placed on the ('data',) mesh over
  `devices` (default: config.mesh.num_devices of jax.devices()), as training places its own.
  """
  model = models.get_model(config)
  tx = optim.make_optimizer(config)
  mesh = sharding.make_mesh(config.mesh.num_devices, devices)
  state = train_state.init_state(config, model, tx, mesh)
  d = config.data
  images = np.random.default_rng(0).integers(
    0,
    d.num_levels,
    (config.train.batch_size, d.image_size, d.image_size, d.num_channels),
    dtype=np.uint8,
  )
  return (train.make_train_step(model, tx, mesh), state, sharding.shard_global_batch(images, mesh))


def memory_of(compiled) -> dict:
  """Buffer sizes XLA assigned to the compiled step, in bytes."""
  m = compiled.memory_analysis()
  if m is None:
    return {}
  out = {
    k: int(getattr(m, f'{k}_size_in_bytes'))
    for k in ('argument', 'output', 'alias', 'temp', 'generated_code')
  }
  out['peak'] = out['argument'] + out['output'] - out['alias'] + out['temp']
  return out


def _rss_bytes() -> int:
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _peak_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class CompiledStep:
  """One config's training step, compiled (timed) and run once, with its state and batch."""

  def __init__(self, config):
    self.step, self.state, self.images = build_step(config)
    self.rss_before = _rss_bytes()
    # For XLA's FLOP count and buffer sizes: the whole step as one compiled call.
    self.compiled = self.step.lower(self.state, self.images, None).compile()
    self.loss = float('nan')
    t0 = time.perf_counter()
    self.run(1)  # Compiles the step's own calls (and runs it once).
    self.compile_s = time.perf_counter() - t0

  def run(self, steps: int) -> list[float]:
    """Runs `steps` training steps; the seconds of each, to the loss being ready."""
    times = []
    for _ in range(steps):
      t0 = time.perf_counter()
      self.state, metrics = self.step(self.state, self.images, None)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - t0)
    self.loss = float(metrics['nll_nats'])
    return times


def measure(config, steps: int) -> dict:
  """Compile seconds, median and fastest step seconds, XLA's (rolled) FLOP count and the
  memory of one training step of `config`."""
  step = CompiledStep(config)
  times = step.run(steps)
  cost = step.compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return dict(
    compile_s=step.compile_s,
    step_s=float(np.median(times)),
    step_s_min=float(np.min(times)),
    steps_timed=steps,
    loss=step.loss,
    xla_flops_compiled=float(cost.get('flops', float('nan'))) if cost else None,
    memory=memory_of(step.compiled),
    rss_growth_bytes=max(0, _peak_rss_bytes() - step.rss_before),
  )


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', default='mnist,cifar')
  parser.add_argument('--models', default=','.join(models.MODEL_NAMES))
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  print(f'devices: {jax.devices()}')
  rows = []
  header = (
    f'{"size":6} {"model":16} {"layers":>6} {"compile s":>9} {"step ms":>9} '
    f'{"images/s":>9} {"GFLOP/step":>10}'
  )
  print(header)
  for size in args.sizes.split(','):
    for name in args.models.split(','):
      config = make_config(name, size, args.batch)
      r = measure(config, args.steps if size == 'mnist' else max(2, args.steps // 4))
      r.update(
        size=size,
        model=name,
        layers=config.model.num_layers,
        batch=args.batch,
        images_per_s=args.batch / r['step_s'],
      )
      rows.append(r)
      print(
        f'{size:6} {name:16} {r["layers"]:6d} {r["compile_s"]:9.2f} '
        f'{1e3 * r["step_s"]:9.1f} {r["images_per_s"]:9.1f} '
        f'{(r["xla_flops_compiled"] or float("nan")) / 1e9:10.2f}',
        flush=True,
      )
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(rows, f, indent=1)


if __name__ == '__main__':
  main()
