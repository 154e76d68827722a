"""Orbax checkpoints of the training state: periodic, atomic, resumable, best-by-validation.

Layout of a workdir:
  config.json              the config of the run (compared on resume)
  checkpoints/<step>/      the latest config.train.keep_checkpoints states
  checkpoints_best/<step>/ the state with the lowest validation loss so far

Orbax writes each step to a temporary directory and renames it when complete, so a run
killed at any moment leaves only whole checkpoints (plus, possibly, a temporary directory
that is ignored). Nothing here ever deletes a directory it cannot read: a corrupt or foreign
checkpoint raises CheckpointError and the run stops.
"""

import json
import logging as std_logging
import os
import re
from typing import Any, Optional

from absl import logging
import jax
import ml_collections
import orbax.checkpoint as ocp

CONFIG_FILE = 'config.json'
LATEST_DIR = 'checkpoints'
BEST_DIR = 'checkpoints_best'
# Fields that fix the parameter shapes or the meaning of the loss: a resumed run must match.
MODEL_FIELDS = ('model', 'data.image_size', 'data.num_channels', 'data.num_levels')
_TMP = re.compile(r'.*\.orbax-checkpoint-tmp.*')


class _QuietOrbax(std_logging.Filter):
  """Drops orbax's INFO records (it logs every directory it renames); keeps warnings."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def quiet_orbax_logs() -> None:
  """Installs the filter on the absl handler (command-line entry points call this)."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _QuietOrbax) for f in handler.filters):
    handler.addFilter(_QuietOrbax())


class CheckpointError(RuntimeError):
  """A checkpoint directory or saved config that this run cannot use (nothing deleted)."""


def _get(d: Any, dotted: str) -> Any:
  for key in dotted.split('.'):
    d = d.get(key) if isinstance(d, dict) else None
  return d


def save_config(workdir: str, config: ml_collections.ConfigDict) -> str:
  """Writes config.json atomically (process 0 only); returns its path."""
  path = os.path.join(workdir, CONFIG_FILE)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(tmp, path)
  return path


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config saved by a run in workdir."""
  path = os.path.join(workdir, CONFIG_FILE)
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except FileNotFoundError:
    raise CheckpointError(f'{path} does not exist: {workdir} is not a pixel_jax workdir.'
                          ) from None
  except (json.JSONDecodeError, TypeError, ValueError) as e:
    raise CheckpointError(f'{path} is not a valid config file ({e}).') from None


def check_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises CheckpointError when workdir holds a run whose model differs from `config`.

  Training fields (num_steps, learning rate, ...) may change between runs; the model and the
  data shape may not, since the checkpoints would not fit.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  old, new = load_config(workdir).to_dict(), json.loads(config.to_json_best_effort())
  diffs = []
  for field in MODEL_FIELDS:
    a, b = _get(old, field), _get(new, field)
    if isinstance(a, dict) and isinstance(b, dict):
      keys = sorted(set(a) | set(b))
      diffs += [f'{field}.{k}: {a.get(k)!r} -> {b.get(k)!r}' for k in keys
                if a.get(k) != b.get(k)]
    elif a != b:
      diffs.append(f'{field}: {a!r} -> {b!r}')
  if diffs:
    raise CheckpointError(f'{workdir} holds a run with a different model config '
                          f'({"; ".join(diffs)}); use a new --workdir or the old config.')


def _check_directory(path: str) -> None:
  """Refuses a checkpoint directory that holds anything but orbax step directories."""
  if not os.path.exists(path):
    return
  if not os.path.isdir(path):
    raise CheckpointError(f'{path} is not a directory; nothing was deleted. Use another '
                          '--workdir or move it away.')
  foreign = sorted(n for n in os.listdir(path) if not (
      (n.isdigit() and os.path.isdir(os.path.join(path, n))) or _TMP.match(n)))
  if foreign:
    raise CheckpointError(f'{path} is not a pixel_jax checkpoint directory (it holds '
                          f'{", ".join(foreign[:5])}); nothing was deleted. Use another '
                          '--workdir or move it away.')


class Checkpointer:
  """The latest-N manager and the best-by-validation manager of one workdir."""

  def __init__(self, workdir: str, keep: int = 3, async_save: bool = True):
    if keep < 1:
      raise ValueError(f'config.train.keep_checkpoints={keep} must be >= 1.')
    self.workdir = workdir
    self.latest_dir = os.path.abspath(os.path.join(workdir, LATEST_DIR))
    self.best_dir = os.path.abspath(os.path.join(workdir, BEST_DIR))
    for path in (self.latest_dir, self.best_dir):
      _check_directory(path)
    self._latest = ocp.CheckpointManager(self.latest_dir, options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=async_save))
    self._best = ocp.CheckpointManager(self.best_dir, options=ocp.CheckpointManagerOptions(
        max_to_keep=1, best_fn=lambda m: m['eval_loss'], best_mode='min',
        keep_checkpoints_without_metrics=False, create=True,
        enable_async_checkpointing=async_save))

  def latest_step(self) -> Optional[int]:
    return self._latest.latest_step()

  def best_step(self) -> Optional[int]:
    return self._best.best_step()

  def all_steps(self) -> list[int]:
    """The steps of the latest-N checkpoints, ascending."""
    return sorted(self._latest.all_steps())

  def save(self, step: int, state: Any, force: bool = False) -> bool:
    """Starts an (asynchronous) save of `state` as `step`; returns whether it saved."""
    return self._latest.save(step, args=ocp.args.StandardSave(state), force=force)

  def save_best(self, step: int, state: Any, eval_loss: float) -> None:
    """Offers `state` to the best manager, which keeps only the lowest eval_loss."""
    self._best.save(step, args=ocp.args.StandardSave(state),
                    metrics={'eval_loss': float(eval_loss)}, force=True)

  def restore(self, abstract_state: Any, step: Optional[int] = None,
              which: str = 'latest') -> tuple[Any, int]:
    """Restores `which` ('latest' | 'best') into the structure/shardings of abstract_state.

    Returns (state, step). Any failure (corrupt files, another model, a foreign directory)
    becomes one CheckpointError line; nothing is deleted.
    """
    manager = self._best if which == 'best' else self._latest
    directory = self.best_dir if which == 'best' else self.latest_dir
    if step is None:
      step = manager.best_step() if which == 'best' else manager.latest_step()
    if step is None:
      raise CheckpointError(f'No checkpoint in {directory}.')
    try:
      state = manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except Exception as e:  # pylint: disable=broad-except
      reason = ' '.join(str(e).split())[:300] or type(e).__name__
      raise CheckpointError(
          f'Cannot restore checkpoint {os.path.join(directory, str(step))}: it is corrupt or '
          f'was written for another model ({type(e).__name__}: {reason}). Nothing was '
          'deleted; move it away or use another --workdir.') from e
    return state, step

  def wait(self) -> None:
    """Blocks until every asynchronous save is on disk."""
    self._latest.wait_until_finished()
    self._best.wait_until_finished()

  def close(self) -> None:
    self.wait()
    self._latest.close()
    self._best.close()
