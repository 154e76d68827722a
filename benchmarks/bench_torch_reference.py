"""pixel_jax's training step against a plain PyTorch (CPU, eager) reference, interleaved.

  pip install -e '.[bench]'      # PyTorch: a benchmark-only dependency
  python benchmarks/bench_torch_reference.py
  python benchmarks/bench_torch_reference.py --models=pixelcnn --calls=40

The networks are those of the MNIST experiment configs (experiments/mnist_pixelcnn.py: 15
residual blocks, h = 16; experiments/mnist_rowlstm.py: 7 Row LSTM layers, h = 16; both with
skip connections and the output head of 32 hidden features, one Bernoulli logit per pixel),
trained on a batch of 16 random 28x28 binary images. The step is forward + backward + Adam
(lr 1e-3, eps 1e-8, no gradient clipping in either; pixel_jax's step is the training loop's
own, `train.make_train_step`, which also computes the gradient norm and a finite check).

The PyTorch networks below are written from the paper and docs/design.md, module for
module as pixel_jax builds them (same layers, masks, parameter shapes and counts; the masked
kernels multiplied by their mask in every forward pass, as usual in PyTorch). Before
timing, the script copies pixel_jax's initial parameters into the PyTorch network and checks
that both give the same NLL on the batch, so the two compute the same function.

One worker process per implementation builds its step and runs it twice untimed (JAX
compiles, both warm up); the driver then asks the two for one timed step at a time in ABBA
order (benchmarks/interleaved_ab.py's helpers), so both see the same load. Both use every
core of the machine (PyTorch: torch.set_num_threads; XLA uses all cores by default).
Prints per model the median seconds per step of each, the median of the per-pair ratios
pixel_jax / PyTorch (< 1: pixel_jax faster) with their interquartile range, and the load.
"""

import argparse
import importlib.util
import os
import statistics
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interleaved_ab  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = {'pixelcnn': 'mnist_pixelcnn', 'row_lstm': 'mnist_rowlstm'}
LEARNING_RATE = 1e-3
EPS = 1e-8


def threads() -> int:
  """The cores this process may run on: what both implementations use."""
  return len(os.sched_getaffinity(0))


def make_config(model_name: str, batch: int):
  """The experiment config of `model_name`, with Adam and no clipping (as the reference)."""
  import bench_precision  # pylint: disable=import-outside-toplevel

  config = bench_precision.load_config(
    os.path.join(ROOT, 'experiments', EXPERIMENTS[model_name] + '.py')
  )
  config.optim.name = 'adam'
  config.optim.learning_rate = LEARNING_RATE
  config.optim.grad_clip_norm = 0.0
  config.train.batch_size = batch
  return config


def make_images(config) -> np.ndarray:
  """The batch both implementations train on: random binary levels [B, H, W, 1], uint8."""
  d = config.data
  shape = (config.train.batch_size, d.image_size, d.image_size, d.num_channels)
  return np.random.default_rng(0).integers(0, d.num_levels, shape, dtype=np.uint8)


# The PyTorch reference networks.


def torch_reference(model_name: str, config):
  """The PyTorch network of `model_name` with the config's sizes (torch imported here)."""
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel
  from torch.nn import functional as F  # pylint: disable=import-outside-toplevel

  from pixel_jax.models import network_config  # pylint: disable=import-outside-toplevel

  m = network_config.NetworkConfig.from_config(config)
  h, features, out_hidden = m.hidden_channels, m.features, m.out_hidden_channels

  class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel is multiplied by a causal mask in every forward pass.

    One colour channel: mask A reads the rows above and the pixels left of the centre in
    its row; mask B also the centre. Even sizes are not needed here."""

    def __init__(self, cin: int, cout: int, kernel_size: tuple[int, int], mask_type: str):
      kh, kw = kernel_size
      super().__init__(cin, cout, kernel_size, padding=(kh // 2, kw // 2))
      mask = torch.zeros(kh, kw)
      mask[: kh // 2] = 1.0
      mask[kh // 2, : kw // 2 + (mask_type == 'B')] = 1.0
      self.register_buffer('mask', mask)

    def forward(self, x):
      return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)

  def conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1)

  class OutputHead(nn.Module):
    def __init__(self):
      super().__init__()
      self.hidden = conv1x1(features, out_hidden)
      self.logits = conv1x1(out_hidden, 1)

    def forward(self, x):
      return self.logits(F.relu(self.hidden(F.relu(x))))

  class ConvBlock(nn.Module):
    """ReLU -> 1x1 2h -> h -> ReLU -> 3x3 mask B -> ReLU -> 1x1 h -> 2h, + input; skip."""

    def __init__(self):
      super().__init__()
      self.reduce = conv1x1(features, h)
      self.masked_conv = MaskedConv2d(h, h, (m.kernel_size,) * 2, 'B')
      self.expand = conv1x1(h, features)
      self.skip = conv1x1(features, features)

    def forward(self, x):
      y = self.masked_conv(F.relu(self.reduce(F.relu(x))))
      out = x + self.expand(F.relu(y))
      return out, self.skip(out)

  class RowLSTM(nn.Module):
    """Input-to-state: a 1x3 mask-B convolution; state-to-state: a width-3 convolution of
    the row above's h (as a product with its [h(c-1), h(c), h(c+1)]); gates [o, f, i, g];
    learned initial state; one Python loop step per row."""

    def __init__(self):
      super().__init__()
      self.input_to_state = MaskedConv2d(features, 4 * h, (1, 3), 'B')
      self.state_to_state = nn.Parameter(torch.empty(3 * h, 4 * h))
      nn.init.xavier_uniform_(self.state_to_state)
      self.initial_h = nn.Parameter(torch.zeros(h))
      self.initial_c = nn.Parameter(torch.zeros(h))

    def forward(self, x):
      gates_is = self.input_to_state(x).permute(0, 2, 3, 1)  # [B, H, W, 4h]
      b, rows, width, _ = gates_is.shape
      h_prev = self.initial_h.expand(b, width, h)
      c_prev = self.initial_c.expand(b, width, h)
      hs = []
      for r in range(rows):
        padded = F.pad(h_prev, (0, 0, 1, 1))
        above = torch.cat([padded[:, :-2], padded[:, 1:-1], padded[:, 2:]], dim=-1)
        o, f, i, g = (gates_is[:, r] + above @ self.state_to_state).chunk(4, dim=-1)
        c_prev = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
        h_prev = torch.sigmoid(o) * torch.tanh(c_prev)
        hs.append(h_prev)
      return torch.stack(hs, dim=1).permute(0, 3, 1, 2)  # [B, h, H, W]

  class RecurrentBlock(nn.Module):
    """Row LSTM -> 1x1 h -> 2h, + input; skip."""

    def __init__(self):
      super().__init__()
      self.row_lstm = RowLSTM()
      self.output_conv = conv1x1(h, features)
      self.skip = conv1x1(features, features)

    def forward(self, x):
      out = x + self.output_conv(self.row_lstm(x))
      return out, self.skip(out)

  class Network(nn.Module):
    """Scale to [-1, 1] -> 7x7 mask A to 2h -> blocks -> sum of skips -> head -> logit."""

    def __init__(self, block: type):
      super().__init__()
      k = m.first_kernel_size
      self.input_conv = MaskedConv2d(1, features, (k, k), 'A')
      self.blocks = nn.ModuleList([block() for _ in range(m.num_layers)])
      self.head = OutputHead()

    def forward(self, images):
      x = self.input_conv(images * 2.0 - 1.0)
      skips = 0
      for block in self.blocks:
        x, skip = block(x)
        skips = skips + skip
      return self.head(skips)

  return Network(ConvBlock if model_name == 'pixelcnn' else RecurrentBlock)


def torch_nll(network, images):
  """Mean NLL in nats per image of binary `images` [B, 1, H, W] (float)."""
  from torch.nn import functional as F  # pylint: disable=import-outside-toplevel

  logits = network(images)
  return F.binary_cross_entropy_with_logits(logits, images, reduction='sum') / images.shape[0]


def torch_from_pixel_jax(network, params: Any) -> None:
  """Copies pixel_jax's parameters (unrolled blocks) into the PyTorch `network`."""
  import torch  # pylint: disable=import-outside-toplevel

  flat = {}
  for path, value in _flatten(params):
    name = '.'.join(
      f'blocks.{p[len("block_") :]}' if p.startswith('block_') else p for p in path[:-1]
    )
    value = np.asarray(value)
    if path[-1] == 'kernel':
      value = value.transpose(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]
      flat[f'{name}.weight'] = value
    elif path[-1] == 'bias':
      flat[f'{name}.bias'] = value
    else:  # The Row LSTM's state_to_state, initial_h and initial_c: the same layout.
      flat[f'{name}.{path[-1]}'] = value
  state = network.state_dict()
  missing = set(k for k in state if not k.endswith('mask')) ^ set(flat)
  if missing:
    raise ValueError(f'PyTorch and pixel_jax parameters differ: {sorted(missing)}')
  network.load_state_dict({**state, **{k: torch.from_numpy(v.copy()) for k, v in flat.items()}})


def _flatten(tree, prefix=()):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flatten(value, prefix + (key,))
    else:
      yield prefix + (key,), value


def check_same_function(model_name: str, batch: int) -> tuple[int, int]:
  """Both networks from pixel_jax's initial parameters give the same NLL on the batch;
  returns (pixel_jax's, PyTorch's) parameter counts, which must match."""
  import jax  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel

  from pixel_jax import evaluation  # pylint: disable=import-outside-toplevel
  from pixel_jax import models  # pylint: disable=import-outside-toplevel

  config = make_config(model_name, batch)
  model = models.get_model(config)
  images = make_images(config)
  params = model.init(jax.random.key(1), images.astype(np.float32))['params']
  params = jax.tree.map(np.asarray, jax.device_get(params))
  # Non-zero biases and initial states, so that every parameter is checked.
  params = jax.tree.map(
    lambda p: p + 0.1 * np.random.default_rng(p.size).standard_normal(p.shape, np.float32),
    params,
  )
  nll_jax = float(evaluation.nll_fn(params, images, model=model).mean())
  network = torch_reference(model_name, config)
  torch_from_pixel_jax(network, params)
  with torch.no_grad():
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32))
    nll_torch = float(torch_nll(network, x))
  print(f'{model_name}: NLL pixel_jax {nll_jax:.4f}, PyTorch {nll_torch:.4f}')
  if not np.isclose(nll_jax, nll_torch, rtol=1e-4):
    raise SystemExit(
      f'{model_name}: pixel_jax NLL {nll_jax:.4f} != PyTorch {nll_torch:.4f}: not the same network.'
    )
  count_jax = sum(int(np.size(p)) for p in jax.tree.leaves(params))
  count_torch = sum(p.numel() for p in network.parameters())
  return count_jax, count_torch


# The workers.


def jax_worker(model_name: str, batch: int) -> None:
  import jax  # pylint: disable=import-outside-toplevel

  import bench_models  # pylint: disable=import-outside-toplevel

  config = make_config(model_name, batch)
  step, train_state, images = bench_models.build_step(config)
  state = [train_state]

  def call():
    state[0], metrics = step(state[0], images, None)
    jax.block_until_ready(metrics)

  call()  # Compile; `serve` runs the warm-up call.
  interleaved_ab.serve(call, str(sum(p.size for p in jax.tree.leaves(state[0].params))))


def torch_worker(model_name: str, batch: int) -> None:
  import torch  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(threads())
  torch.manual_seed(0)
  config = make_config(model_name, batch)
  network = torch_reference(model_name, config)
  optimizer = torch.optim.Adam(network.parameters(), lr=LEARNING_RATE, eps=EPS)
  images = torch.from_numpy(make_images(config).transpose(0, 3, 1, 2).astype(np.float32))

  def call():
    optimizer.zero_grad(set_to_none=True)
    loss = torch_nll(network, images)
    loss.backward()
    optimizer.step()
    loss.item()

  call()  # Warm-up; `serve` runs a second one.
  interleaved_ab.serve(call, str(sum(p.numel() for p in network.parameters())))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--models', default=','.join(EXPERIMENTS))
  parser.add_argument('--calls', type=int, default=30, help='Timed steps per implementation.')
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--worker', default='', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if importlib.util.find_spec('torch') is None:
    raise SystemExit(
      "PyTorch is not installed; install the benchmark extra: pip install -e '.[bench]'"
    )
  names = args.models.split(',')
  unknown = sorted(set(names) - set(EXPERIMENTS))
  if unknown:
    parser.error(f'unknown models {unknown}; use some of {",".join(EXPERIMENTS)}')
  if args.worker:
    implementation, model_name = args.worker.split(':')
    (jax_worker if implementation == 'jax' else torch_worker)(model_name, args.batch)
    return
  print(
    f'train step (forward + backward + Adam), batch {args.batch}, 28x28 binary, {threads()} '
    f'threads each; {args.calls} steps each, ABBA; load {os.getloadavg()[0]:.1f}'
  )
  print(
    f'{"model":10s} {"params":>7s} {"PyTorch s":>10s} {"pixel_jax s":>11s} {"ratio":>6s}  quartiles'
  )
  for name in names:
    count_jax, count_torch = check_same_function(name, args.batch)
    assert count_jax == count_torch, (count_jax, count_torch)
    workers = {}
    for implementation in ('torch', 'jax'):
      argv = [sys.executable, os.path.abspath(__file__), f'--batch={args.batch}']
      workers[implementation], count = interleaved_ab.start_worker(
        argv + [f'--models={name}', f'--worker={implementation}:{name}']
      )
      assert int(count) == count_jax, (implementation, count, count_jax)
    times = interleaved_ab.time_interleaved(workers, args.calls)
    ratio, q1, q3 = interleaved_ab.ratio_quartiles(times['torch'], times['jax'])
    print(
      f'{name:10s} {count_jax:7d} {statistics.median(times["torch"]):10.4f} '
      f'{statistics.median(times["jax"]):11.4f} {ratio:6.3f}  {q1:.3f}..{q3:.3f}  '
      f'(load {os.getloadavg()[0]:.1f})',
      flush=True,
    )


if __name__ == '__main__':
  main()
