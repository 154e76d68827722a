"""Whole-split NLL of a trained run: nats/image for binary data, bits/dim for colour.

  python -m pixel_jax.evaluate --workdir=/tmp/run1                      # best, test split
  python -m pixel_jax.evaluate --workdir=/tmp/run1 --checkpoint=latest --split=validation
  python -m pixel_jax.evaluate --workdir=/tmp/run1 \
      --data_name=mnist_idx --idx_dir=/path/to/mnist                      # real MNIST test
  python -m pixel_jax.evaluate --workdir=/tmp/run1 --heatmaps=8            # + likelihood maps

The model is rebuilt from the workdir's config.json (or --config, with --config.* overrides);
the --data_* flags then point the same model at other data of the same shape.

--heatmaps=N also writes, for the first N images of the split, each image beside its
per-pixel NLL in bits (the sum of the pixel's sub-pixel NLLs over its channels; the maps of
an image sum to its NLL), on one colour scale shared by the N images, into --heatmaps_dir
(default WORKDIR/heatmaps): heatmap_000.png ... one per image, heatmaps.png all of them,
heatmaps.npy the maps (float32 bits [N, H, W]).
"""

import json
import math
import os
import sys
from typing import Optional

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
from ml_collections import config_flags
import numpy as np

from pixel_jax import checkpointing
from pixel_jax import config_files
from pixel_jax import configs
from pixel_jax import console
from pixel_jax import distributed
from pixel_jax import evaluation
from pixel_jax import image_grid
from pixel_jax import runs
from pixel_jax import storage

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines this tool's flags. Called only when run as a program, so the library
  modules main, evaluate and sample can be imported together (shared flag names)."""
  config_flags.DEFINE_config_file(
    'config', None, "Optional config file; default: the workdir's config.json.", lock_config=True
  )
  flags.DEFINE_string('workdir', None, 'The training run to evaluate.')
  flags.DEFINE_string('split', 'test', 'Split to evaluate.')
  flags.DEFINE_string(
    'checkpoint',
    'best',
    '"best" (lowest validation loss; falls back to latest), "latest", or a step number.',
  )
  flags.DEFINE_string('data_name', None, 'Override config.data.name (e.g. mnist_idx).')
  flags.DEFINE_string('idx_dir', None, 'Override config.data.idx_dir.')
  flags.DEFINE_string('data_dir', None, 'Override config.data.data_dir.')
  flags.DEFINE_string('binarization', None, 'Override config.data.binarization.')
  flags.DEFINE_integer('batch_size', None, 'Override config.eval.batch_size.')
  flags.DEFINE_integer('max_examples', None, 'Override config.eval.max_examples (0: all).')
  flags.DEFINE_string('output', None, 'Also write the result as JSON here.')
  flags.DEFINE_integer(
    'heatmaps', 0, 'Also write per-pixel NLL heatmaps of the first N images of the split.'
  )
  flags.DEFINE_string('heatmaps_dir', None, 'Where to write them (default: WORKDIR/heatmaps).')
  distributed.define_flags()
  flags.mark_flags_as_required(['workdir'])


def evaluate(
  config: Optional[ml_collections.ConfigDict],
  workdir: str,
  split: str = 'test',
  checkpoint: str = 'best',
  heatmaps: int = 0,
  heatmaps_dir: Optional[str] = None,
) -> dict:
  """Restores a checkpoint of `workdir` and returns its NLL on `split` of config.data.

  `config` None uses the run's config.json. A class-conditional model
  (config.model.num_classes > 0) is evaluated on the split's labels: the conditional NLL
  -log p(x | class). Returns {'loss', 'unit', 'nll_nats', 'conditional' (whether it is
  that), 'bits_per_dim', 'num_examples', 'step', 'checkpoint', 'split', 'data' (what was really
  read, e.g. 'mnist_idx (idx_dir=/data/mnist)'), 'binarization' (as applied, e.g. 'static
  (Bernoulli(x/255) sampled once, seed 0)')}, plus each stage's 'nll_nats_<stage>' for the
  multi-scale model. `heatmaps` > 0 also writes the heatmaps of the split's first images
  (write_heatmaps) into `heatmaps_dir` (default WORKDIR/heatmaps) and adds 'heatmaps':
  the paths written.
  """
  if heatmaps < 0:
    raise configs.ConfigError(f'--heatmaps={heatmaps} must be a number of images >= 0.')
  run = runs.restore_run(workdir, checkpoint, config)
  config = run.config
  data = runs.open_data(config)
  images = runs.load_split(data, split)
  labels = runs.load_labels(data, split)  # None unless the model is class-conditional.
  result = evaluation.evaluate_images(
    config, run.model, run.state.params, images, run.mesh, labels=labels
  )
  result.update(
    unit=evaluation.loss_unit(config),
    step=run.step,
    checkpoint=run.checkpoint,
    split=split,
    data=data.describe(split),
    binarization=data.info.binarization,
    conditional=bool(config.model.num_classes),
  )
  if heatmaps:
    shown = np.asarray(images[:heatmaps])
    maps = evaluation.pixel_nlls(
      config,
      run.model,
      run.state.params,
      shown,
      run.mesh,
      labels=None if labels is None else labels[:heatmaps],
    )
    result['heatmaps'] = write_heatmaps(
      shown, maps, config.data.num_levels, heatmaps_dir or os.path.join(workdir, 'heatmaps')
    )
  return result


def write_heatmaps(
  images_NxHxWxC: np.ndarray, nll_nats_NxHxW: np.ndarray, num_levels: int, output_dir: str
) -> list[str]:
  """Writes each image beside its per-pixel NLL in bits, on one colour scale for all.

  Files: heatmap_<i>.png (one per image, numbered from 000), heatmaps.png (all images),
  heatmaps.npy (float32 bits [N, H, W]). Each caption gives the image's NLL in nats and
  bits/dim. Returns the paths written.
  """
  bits = (np.asarray(nll_nats_NxHxW, np.float32) / math.log(2.0)).astype(np.float32)
  vmax = float(bits.max())
  dims = math.prod(images_NxHxWxC.shape[1:])
  captions = [
    f'{i}: {b.sum() * math.log(2.0):.2f} nats, {b.sum() / dims:.3f} bits/dim'
    for i, b in enumerate(bits)
  ]
  paths = []
  for i in range(len(bits)):
    panel = image_grid.heatmap_panel(
      images_NxHxWxC[i : i + 1],
      bits[i : i + 1],
      num_levels,
      vmax=vmax,
      captions=captions[i : i + 1],
    )
    paths.append(image_grid.save_png(os.path.join(output_dir, f'heatmap_{i:03d}.png'), panel))
  paths.append(
    image_grid.save_png(
      os.path.join(output_dir, 'heatmaps.png'),
      image_grid.heatmap_panel(images_NxHxWxC, bits, num_levels, vmax=vmax, captions=captions),
    )
  )
  return paths + [storage.save_npy(os.path.join(output_dir, 'heatmaps.npy'), bits)]


def _config_from_flags() -> ml_collections.ConfigDict:
  config = FLAGS.config
  if config is None:
    config = runs.load_config(FLAGS.workdir)
  config = ml_collections.ConfigDict(config.to_dict())  # Unlocked copy.
  for flag, field in (
    ('data_name', 'name'),
    ('idx_dir', 'idx_dir'),
    ('data_dir', 'data_dir'),
    ('binarization', 'binarization'),
  ):
    if FLAGS[flag].value is not None:
      config.data[field] = FLAGS[flag].value
  if FLAGS.batch_size is not None:
    config.eval.batch_size = FLAGS.batch_size
  if FLAGS.max_examples is not None:
    config.eval.max_examples = FLAGS.max_examples
  return config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Too many command-line arguments: {argv[1:]}')
  checkpointing.quiet_orbax_logs()
  console.quiet_library_logs()
  try:
    distributed.initialize_from_flags()
    config = _config_from_flags()
    result = evaluate(
      config, FLAGS.workdir, FLAGS.split, FLAGS.checkpoint, FLAGS.heatmaps, FLAGS.heatmaps_dir
    )
  except runs.USER_ERRORS as e:
    logging.error('%s', e)
    sys.exit(f'pixel_jax.evaluate: error: {e}')
  stages = ''.join(
    f', {k[len(evaluation.PART_PREFIX) :]} stage {v:.3f}'
    for k, v in evaluation.stage_nlls(result).items()
  )  # Multi-scale only.
  kind = "conditional NLL (given each image's label)" if result['conditional'] else 'NLL'
  line = (
    f'{result["split"]} {kind} of {result["data"]} (binarization '
    f'{result["binarization"]}, {result["num_examples"]} images): '
    f'{result["loss"]:.4f} {result["unit"]} '
    f'({result["nll_nats"]:.3f} nats/image{stages}, {result["bits_per_dim"]:.4f} '
    f'bits/dim) | {result["checkpoint"]} checkpoint, step {result["step"]}'
  )
  if jax.process_index() != 0:  # Every process computed the same result; one reports it.
    return
  print(line, flush=True)
  for path in result.get('heatmaps', ()):
    print(path, flush=True)
  if FLAGS.output:
    storage.write_atomic(FLAGS.output, json.dumps(result, indent=2))


if __name__ == '__main__':
  console.run_tool(main, define_flags, flags_parser=config_files.parse_flags)
