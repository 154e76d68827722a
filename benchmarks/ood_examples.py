"""Writes a .npy of test digits and made-up out-of-distribution images, to score with
`python -m pixel_jax.score` (docs/results.md, "Scoring images").

  .venv/bin/python benchmarks/ood_examples.py --workdir=runs/protocol/rowlstm --out=/tmp/ood.npy
  .venv/bin/python -m pixel_jax.score --workdir=runs/protocol/rowlstm --images=/tmp/ood.npy

The first --num_digits images are the run's test split as evaluation reads it (for the
offline protocol: the real MNIST test set, statically binarized); then, for a binary model,
a blank (all-black) image, an all-white image, Bernoulli(0.5) noise, Bernoulli(0.1) noise,
and the first digit inverted and flipped upside down. Their names are printed in order.
"""

import argparse

import numpy as np

from pixel_jax import checkpointing
from pixel_jax import runs


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--out', required=True)
  parser.add_argument('--split', default='test')
  parser.add_argument('--num_digits', type=int, default=8)
  args = parser.parse_args()
  config = checkpointing.load_config(args.workdir)
  if config.data.num_levels != 2:
    raise SystemExit('ood_examples.py: error: the made-up images are for binary models.')
  digits = np.asarray(runs.load_split(runs.open_data(config), args.split)[: args.num_digits])
  shape = digits.shape[1:]
  rng = np.random.default_rng(0)
  made_up = {
    'blank (all black)': np.zeros(shape, np.uint8),
    'all white': np.ones(shape, np.uint8),
    'noise p=0.5': (rng.random(shape) < 0.5).astype(np.uint8),
    'noise p=0.1': (rng.random(shape) < 0.1).astype(np.uint8),
    'digit 0 inverted': 1 - digits[0],
    'digit 0 upside down': digits[0][::-1],
  }
  images = np.concatenate([digits, np.stack(list(made_up.values()))]).astype(np.uint8)
  np.save(args.out, images)
  names = [f'{args.split} digit {i}' for i in range(len(digits))] + list(made_up)
  for i, name in enumerate(names):
    print(f'{i}\t{name}')


if __name__ == '__main__':
  main()
