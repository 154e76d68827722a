"""Forward+backward step time and compile time of each network at the paper's sizes.

  python benchmarks/bench_models.py                       # MNIST and CIFAR sizes
  python benchmarks/bench_models.py --sizes=mnist --steps=20 --out=bench.json

MNIST size: 7 layers, h = 16, 28x28x1, 2 levels, batch 16. CIFAR size: 12 layers,
h = 128, 32x32x3, 256 levels, output width 1024, batch 16. A step is value_and_grad of the
mean NLL plus an RMSProp update, jitted, state donated: what training runs.
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pixel_jax import configs
from pixel_jax import losses
from pixel_jax import models

SIZES = {
    'mnist': dict(layers=7, hidden=16, size=28, channels=1, levels=2, out_hidden=32),
    'cifar': dict(layers=12, hidden=128, size=32, channels=3, levels=256, out_hidden=1024),
}
PIXELCNN_LAYERS = {'mnist': 7, 'cifar': 15}


def make_config(model, size, batch, num_layers=None, image_size=None, dtype='float32',
                scan_layers=True):
  s = SIZES[size]
  config = configs.base_config()
  config.model.name = model
  config.model.num_layers = num_layers or (
      PIXELCNN_LAYERS[size] if model == 'pixelcnn' else s['layers'])
  config.model.hidden_channels = s['hidden']
  config.model.out_hidden_channels = s['out_hidden']
  config.model.dtype = dtype
  config.model.scan_layers = scan_layers
  config.data.image_size = image_size or s['size']
  config.data.num_channels = s['channels']
  config.data.num_levels = s['levels']
  config.train.batch_size = batch
  return config


def build_step(config):
  """Returns (jitted step, params, opt_state, images) for one training step."""
  model = models.get_model(config)
  d = config.data
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, d.num_levels, (
      config.train.batch_size, d.image_size, d.image_size, d.num_channels)), jnp.float32)
  params = jax.jit(model.init)(jax.random.key(0), images)
  opt = optax.rmsprop(1e-3)
  opt_state = opt.init(params)

  def step(params, opt_state, x):
    def loss_fn(p):
      return losses.nll_per_image(model.apply(p, x), x).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1)), params, opt_state, images


def measure(config, steps):
  """Compile seconds, median step seconds, and XLA's FLOP count for one step."""
  step, params, opt_state, images = build_step(config)
  t0 = time.perf_counter()
  compiled = step.lower(params, opt_state, images).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', float('nan'))) if cost else float('nan')
  params, opt_state, loss = compiled(params, opt_state, images)  # Warm-up.
  loss.block_until_ready()
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    params, opt_state, loss = compiled(params, opt_state, images)
    loss.block_until_ready()
    times.append(time.perf_counter() - t0)
  return dict(compile_s=compile_s, step_s=float(np.median(times)), flops=flops,
              loss=float(loss))


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
  header = f"{'size':6} {'model':16} {'layers':>6} {'compile s':>9} {'step ms':>9} " \
           f"{'images/s':>9} {'GFLOP/step':>10}"
  print(header)
  for size in args.sizes.split(','):
    for name in args.models.split(','):
      config = make_config(name, size, args.batch)
      r = measure(config, args.steps if size == 'mnist' else max(2, args.steps // 4))
      r.update(size=size, model=name, layers=config.model.num_layers, batch=args.batch,
               images_per_s=args.batch / r['step_s'])
      rows.append(r)
      print(f"{size:6} {name:16} {r['layers']:6d} {r['compile_s']:9.2f} "
            f"{1e3 * r['step_s']:9.1f} {r['images_per_s']:9.1f} {r['flops'] / 1e9:10.2f}",
            flush=True)
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(rows, f, indent=1)


if __name__ == '__main__':
  main()
