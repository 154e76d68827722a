"""Whole-split NLL of a trained run: nats/image for binary data, bits/dim for colour.

  python -m pixel_jax.evaluate --workdir=/tmp/run1                      # best, test split
  python -m pixel_jax.evaluate --workdir=/tmp/run1 --checkpoint=latest --split=validation
  python -m pixel_jax.evaluate --workdir=/tmp/run1 \
      --data_name=mnist_idx --idx_dir=/path/to/mnist                      # real MNIST test

The model is rebuilt from the workdir's config.json (or --config, with --config.* overrides);
the --data_* flags then point the same model at other data of the same shape.
"""

import json
import os
import sys
from typing import Optional

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
from ml_collections import config_flags

from pixel_jax import checkpointing
from pixel_jax import config_files
from pixel_jax import evaluation
from pixel_jax import runs

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines this tool's flags. Called only when run as a program, so the library
  modules main, evaluate and sample can be imported together (shared flag names)."""
  config_flags.DEFINE_config_file('config', None, 'Optional config file; default: the '
                                  "workdir's config.json.", lock_config=True)
  flags.DEFINE_string('workdir', None, 'The training run to evaluate.')
  flags.DEFINE_string('split', 'test', 'Split to evaluate.')
  flags.DEFINE_string('checkpoint', 'best', '"best" (lowest validation loss; falls back to '
                      'latest), "latest", or a step number.')
  flags.DEFINE_string('data_name', None, 'Override config.data.name (e.g. mnist_idx).')
  flags.DEFINE_string('idx_dir', None, 'Override config.data.idx_dir.')
  flags.DEFINE_string('data_dir', None, 'Override config.data.data_dir.')
  flags.DEFINE_string('binarization', None, 'Override config.data.binarization.')
  flags.DEFINE_integer('batch_size', None, 'Override config.eval.batch_size.')
  flags.DEFINE_integer('max_examples', None, 'Override config.eval.max_examples (0: all).')
  flags.DEFINE_string('output', None, 'Also write the result as JSON here.')
  flags.mark_flags_as_required(['workdir'])


def evaluate(config: Optional[ml_collections.ConfigDict], workdir: str, split: str = 'test',
             checkpoint: str = 'best') -> dict:
  """Restores a checkpoint of `workdir` and returns its NLL on `split` of config.data.

  `config` None uses the run's config.json. Returns {'loss', 'unit', 'nll_nats',
  'bits_per_dim', 'num_examples', 'step', 'checkpoint', 'split', 'data' (what was really
  read, e.g. 'mnist_idx (idx_dir=/data/mnist)'), 'binarization' (as applied, e.g. 'static
  (Bernoulli(x/255) sampled once, seed 0)')}, plus each stage's 'nll_nats_<stage>' for the
  multi-scale model.
  """
  run = runs.restore_run(workdir, checkpoint, config)
  config = run.config
  data = runs.open_data(config)
  images = runs.load_split(data, split)
  result = evaluation.evaluate_images(config, run.model, run.state.params, images, run.mesh)
  result.update(unit=evaluation.loss_unit(config), step=run.step, checkpoint=run.checkpoint,
                split=split, data=data.describe(split), binarization=data.info.binarization)
  return result


def _config_from_flags() -> ml_collections.ConfigDict:
  config = FLAGS.config
  if config is None:
    config = checkpointing.load_config(FLAGS.workdir)
  config = ml_collections.ConfigDict(config.to_dict())  # Unlocked copy.
  for flag, field in (('data_name', 'name'), ('idx_dir', 'idx_dir'),
                      ('data_dir', 'data_dir'), ('binarization', 'binarization')):
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
  try:
    config = _config_from_flags()
    result = evaluate(config, FLAGS.workdir, FLAGS.split, FLAGS.checkpoint)
  except runs.USER_ERRORS as e:
    logging.error('%s', e)
    sys.exit(f'pixel_jax.evaluate: error: {e}')
  stages = ''.join(f', {k[len(evaluation.PART_PREFIX):]} stage {v:.3f}'
                   for k, v in evaluation.stage_nlls(result).items())  # Multi-scale only.
  line = (f'{result["split"]} NLL of {result["data"]} (binarization {result["binarization"]}, '
          f'{result["num_examples"]} images): {result["loss"]:.4f} {result["unit"]} '
          f'({result["nll_nats"]:.3f} nats/image{stages}, {result["bits_per_dim"]:.4f} '
          f'bits/dim) | {result["checkpoint"]} checkpoint, step {result["step"]}')
  print(line, flush=True)
  if FLAGS.output:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, 'w') as f:
      json.dump(result, f, indent=2)


def run(argv: Optional[list[str]] = None) -> None:
  app.run(main, argv=argv, flags_parser=config_files.parse_flags)


if __name__ == '__main__':
  define_flags()
  jax.config.config_with_absl()
  run()
