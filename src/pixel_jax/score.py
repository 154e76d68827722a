"""Exact NLL of any images under a trained run, one row per image, as CSV and JSON lines.

  python -m pixel_jax.score --workdir=/tmp/run1 --images=/path/to/pngs/
  python -m pixel_jax.score --workdir=/tmp/run1 --images=images.npy --output_dir=/tmp/scores
  python -m pixel_jax.score --workdir=gs://bucket/run1 --images=gs://bucket/images.npy

--images is a folder of PNG files or a .npy file of integer levels [N, H, W, C] (or
[N, H, W]), local or in cloud storage (gs://..., any URI storage.path accepts); the images
must already have the model's size, channels and levels (image_files.py says how PNG values
map to levels; --binarize thresholds 8-bit grey images for a binary model). Writes
OUTPUT_DIR/scores.csv and OUTPUT_DIR/scores.jsonl (default OUTPUT_DIR: WORKDIR/scores; a
URI such as gs://... works as well), one row per image in input order: index, image (file name or
FILE[i]), nll_nats (the exact negative log-likelihood of the whole image) and bits_per_dim
(nll_nats / (H * W * C * ln 2)). A class-conditional run scores the marginal likelihood
under a uniform class prior, -log p(x) = -log (1/K) sum_y p(x | y), and adds the column
most_likely_class (argmax_y p(x | y)).

For out-of-distribution and anomaly screening, a higher NLL means the model finds the image
less likely. CAVEAT: a likelihood is not a calibrated out-of-distribution score. Deep
generative models can assign HIGHER likelihood to images from another distribution than to
their own test images (Nalisnick et al., "Do Deep Generative Models Know What They Don't
Know?", ICLR 2019: e.g. models trained on CIFAR-10 rate SVHN as more likely); smooth,
simple or low-contrast images are favoured whatever their content. Use the scores to rank
images against the scores of known in-distribution images, and check on examples of the
anomalies you care about before trusting a threshold.
"""

import csv
import io
import json
import math
import os
import sys
from typing import Optional

from absl import app
from absl import flags
from absl import logging
import numpy as np

from pixel_jax import checkpointing
from pixel_jax import console
from pixel_jax import evaluation
from pixel_jax import image_files
from pixel_jax import runs
from pixel_jax import storage

FLAGS = flags.FLAGS
FIELDS = ('index', 'image', 'nll_nats', 'bits_per_dim')
CLASS_FIELD = 'most_likely_class'  # Class-conditional runs only.


def define_flags() -> None:
  """Defines this tool's flags (only when run as a program; see evaluate.define_flags)."""
  flags.DEFINE_string('workdir', None, 'The training run whose model scores the images.')
  flags.DEFINE_string(
    'images',
    None,
    'A folder of PNG files or a .npy file of integer levels [N, H, W, C] (or [N, H, W]), '
    'local or a URI (gs://bucket/images.npy).',
  )
  flags.DEFINE_string(
    'checkpoint', 'best', '"best" (falls back to latest), "latest", or a step number.'
  )
  flags.DEFINE_boolean(
    'binarize', False, 'Threshold 8-bit grey values at 128 for a binary (two-level) model.'
  )
  flags.DEFINE_integer(
    'batch_size', None, 'Images per forward pass (default: config.eval.batch_size).'
  )
  flags.DEFINE_string(
    'output_dir', None, 'Where to write scores.csv and scores.jsonl (default: WORKDIR/scores).'
  )
  flags.mark_flags_as_required(['workdir', 'images'])


def score_images(
  workdir: str,
  images: str,
  checkpoint: str = 'best',
  binarize: bool = False,
  batch_size: Optional[int] = None,
) -> tuple[list[dict], runs.RestoredRun]:
  """Each image's exact NLL under a checkpoint of `workdir`, in input order.

  Args:
    workdir: the training run.
    images: a folder of PNG files or a .npy file, local or a URI (image_files.load_images).
    checkpoint: 'best', 'latest' or a step number (runs.restore_run).
    binarize: threshold 8-bit grey values at 128 for a two-level model.
    batch_size: images per forward pass; None keeps config.eval.batch_size.

  Returns:
    ([{'index', 'image', 'nll_nats', 'bits_per_dim'} per image, plus 'most_likely_class'
    for a class-conditional run], the restored run).
  """
  if not (storage.path(workdir) / checkpointing.CONFIG_FILE).exists():
    runs.restore_run(workdir, checkpoint)  # Raises the error that says what is missing.
  config = runs.load_config(workdir)
  # The images are checked against the run's data shape before the checkpoint is loaded.
  levels, names = image_files.load_images(images, config, binarize)
  if batch_size is not None:
    config.eval.batch_size = batch_size  # Validated with the rest by restore_run.
  run = runs.restore_run(workdir, checkpoint, config)
  k = run.config.model.num_classes
  step_fn = evaluation.make_pixel_nll_step(run.model, run.mesh)

  def nll_given(labels):
    return (
      evaluation.pixel_nlls(
        run.config, run.model, run.state.params, levels, run.mesh, step_fn, labels
      )
      .astype(np.float64)
      .sum(axis=(1, 2))
    )

  best = None
  if k:  # Marginal over a uniform class prior: -log (1/K) sum_y exp(-NLL(x | y)).
    per_class = np.stack([nll_given(np.full(len(levels), y, np.int32)) for y in range(k)])
    low = per_class.min(axis=0)
    nll = low - np.log(np.exp(low - per_class).sum(axis=0)) + math.log(k)
    best = per_class.argmin(axis=0)
  else:
    nll = nll_given(None)
  dims = math.prod(levels.shape[1:])
  rows = [
    {
      'index': i,
      'image': name,
      'nll_nats': float(n),
      'bits_per_dim': float(n / (dims * math.log(2.0))),
    }
    for i, (name, n) in enumerate(zip(names, nll))
  ]
  if best is not None:
    for row, y in zip(rows, best):
      row[CLASS_FIELD] = int(y)
  return rows, run


def write_scores(rows: list[dict], output_dir: str) -> dict[str, str]:
  """Writes scores.csv and scores.jsonl (each whole or not at all; output_dir may be a URI
  such as gs://...); returns their paths."""
  paths = {
    'csv': os.path.join(output_dir, 'scores.csv'),
    'jsonl': os.path.join(output_dir, 'scores.jsonl'),
  }
  table = io.StringIO(newline='')
  writer = csv.DictWriter(table, fieldnames=list(rows[0]) if rows else FIELDS)
  writer.writeheader()
  writer.writerows(rows)
  storage.write_atomic(paths['csv'], table.getvalue())
  storage.write_atomic(paths['jsonl'], ''.join(json.dumps(row) + '\n' for row in rows))
  return paths


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Too many command-line arguments: {argv[1:]}')
  checkpointing.quiet_orbax_logs()
  try:
    rows, run = score_images(
      FLAGS.workdir, FLAGS.images, FLAGS.checkpoint, FLAGS.binarize, FLAGS.batch_size
    )
  except (image_files.ImageFileError, *runs.USER_ERRORS) as e:
    logging.error('%s', e)
    sys.exit(f'pixel_jax.score: error: {e}')
  paths = write_scores(rows, FLAGS.output_dir or os.path.join(FLAGS.workdir, 'scores'))
  nll = np.array([r['nll_nats'] for r in rows])
  print(
    f'{len(rows)} images of {FLAGS.images}: NLL mean {nll.mean():.3f}, min {nll.min():.3f},'
    f' max {nll.max():.3f} nats/image | {run.checkpoint} checkpoint, step {run.step} | '
    f'{paths["csv"]}, {paths["jsonl"]}',
    flush=True,
  )


if __name__ == '__main__':
  console.run_tool(main, define_flags)
