"""Trains and evaluates a PixelRNN / PixelCNN from an experiment config.

  python -m pixel_jax.main --config=experiments/mnist_rowlstm.py --workdir=/tmp/run1
  python -m pixel_jax.main --config=mnist_rowlstm --workdir=/tmp/run1   # from any directory
  python -m pixel_jax.main --config=experiments/tiny.py --workdir=/tmp/t \
      --config.train.num_steps=50

This file is intentionally kept short: everything else lives in importable libraries
(pixel_jax.train) that also work from a notebook cell. Re-running the same command resumes
from the latest checkpoint in --workdir.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from pixel_jax import checkpointing
from pixel_jax import config_files
from pixel_jax import train

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines this tool's flags. Called only when run as a program, so the library
  modules main, evaluate and sample can be imported together (shared flag names)."""
  config_flags.DEFINE_config_file('config', None, 'A shipped config name (mnist_rowlstm) '
                                  'or a config file (experiments/mnist_rowlstm.py).',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and samples.')
  flags.DEFINE_enum('distributed', 'auto', ['auto', 'on', 'off'],
                    'jax.distributed.initialize() for multi-host runs; "auto" calls it when '
                    'a coordinator is configured in the environment (JAX_COORDINATOR_ADDRESS, '
                    'a multi-task SLURM job or a multi-worker Cloud TPU).')
  flags.mark_flags_as_required(['config', 'workdir'])


def _multihost_environment() -> bool:
  """Whether the environment describes a multi-process job that JAX can join."""
  env = os.environ
  if env.get('JAX_COORDINATOR_ADDRESS'):
    return True
  if int(env.get('SLURM_NTASKS', '1') or 1) > 1:
    return True
  return len([h for h in env.get('TPU_WORKER_HOSTNAMES', '').split(',') if h]) > 1


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Too many command-line arguments: {argv[1:]}')
  checkpointing.quiet_orbax_logs()
  if FLAGS.distributed == 'on' or (FLAGS.distributed == 'auto' and _multihost_environment()):
    jax.distributed.initialize()
  logging.info('JAX process %d / %d; local devices: %s', jax.process_index(),
               jax.process_count(), jax.local_devices())
  logging.info('Global devices: %d x %s (%s backend)', jax.device_count(),
               jax.devices()[0].device_kind, jax.default_backend())
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except train.USER_ERRORS as e:
    logging.error('%s', e)
    sys.exit(f'pixel_jax: error: {e}')


if __name__ == '__main__':
  define_flags()
  jax.config.config_with_absl()
  app.run(main, flags_parser=config_files.parse_flags)
