"""Orbax checkpoints of the training state: periodic, atomic, resumable, best-by-validation.

Layout of a workdir:
  config.json              the config of the run (compared on resume)
  checkpoints/<step>/      the latest config.train.keep_checkpoints states
  checkpoints_best/<step>/ the state with the lowest validation loss so far

  checkpoints_set_aside/    checkpoints found corrupt, moved here (never deleted)

Orbax writes each step to a temporary directory and renames it when complete, so a run
killed at any moment leaves only whole checkpoints (plus, possibly, a temporary directory
that is ignored), and readers never see half of one. Removal is atomic the same way: a step
that falls out of the kept set is first renamed into `<dir>/deleted_steps/` (on a local or
mounted filesystem) and only then deleted, so a kill during a deletion never leaves half a
step among the checkpoints; what a killed deletion left there is removed when the run goes on.

Every checkpoint holds, beside the state, a SHA-256 checksum of each part of it (step,
params, opt_state) computed from the arrays that were saved; a restore recomputes them from
the arrays it read. A latest checkpoint that fails (unreadable, truncated, or restored to
different numbers) is moved to checkpoints_set_aside/ with one warning and the newest good
one is restored instead. Nothing here deletes a directory it cannot read.
"""

import copy
import hashlib
import json
import logging as std_logging
import os
import re
import traceback
from typing import Any, Optional, Sequence, Union

from absl import logging
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from pixel_jax import storage

CONFIG_FILE = 'config.json'
LATEST_DIR = 'checkpoints'
BEST_DIR = 'checkpoints_best'
SET_ASIDE_DIR = 'checkpoints_set_aside'
# Steps on their way out are renamed into this subdirectory first (see the module docstring).
DELETED_STEPS_DIR = 'deleted_steps'
# Fields that fix the parameter shapes or the meaning of the loss: a resumed run must match.
MODEL_FIELDS = ('model', 'data.image_size', 'data.num_channels', 'data.num_levels')
_TMP = re.compile(r'.*\.orbax-checkpoint-tmp.*')


def _raised_in_orbax(record: std_logging.LogRecord) -> bool:
  """Whether the record carries an exception raised inside orbax (asyncio logs the failed
  writes of one save that nobody awaited: the first failure is the one the run reports)."""
  tb = record.exc_info[2] if record.exc_info else None
  return any('/orbax/' in frame.filename for frame in traceback.extract_tb(tb))


class _QuietOrbax(std_logging.Filter):
  """Drops orbax's INFO records (it logs every directory it renames) and its tracebacks (a
  failed save is reported by the run in one line, also when asyncio logs the save's other
  failed writes); keeps its warnings."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if '/orbax/' not in record.pathname:
      return not _raised_in_orbax(record)
    if record.exc_info:
      return False
    # A read-only manager (evaluate, sample) announces its adjusted options: not news.
    return (
      record.levelno >= std_logging.WARNING
      and 'read_only' not in record.getMessage()
      and ('read only' not in record.getMessage())
    )


def quiet_orbax_logs() -> None:
  """Installs the filter on the absl handler (command-line entry points call this)."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _QuietOrbax) for f in handler.filters):
    handler.addFilter(_QuietOrbax())


class CheckpointError(RuntimeError):
  """A checkpoint directory or saved config that this run cannot use (nothing deleted)."""


class OptimizerChangedError(CheckpointError):
  """The checkpoint's parameters fit but its optimiser state does not (another optimiser)."""


def _get(d: Any, dotted: str) -> Any:
  for key in dotted.split('.'):
    d = d.get(key) if isinstance(d, dict) else None
  return d


def save_config(workdir: str, config: ml_collections.ConfigDict) -> str:
  """Writes config.json atomically (process 0 only); returns its path."""
  path = os.path.join(workdir, CONFIG_FILE)
  if jax.process_index() == 0:
    storage.write_atomic(path, config.to_json_best_effort(indent=2, sort_keys=True))
  return path


def load_config(
  workdir: str, defaults: Optional[ml_collections.ConfigDict] = None
) -> ml_collections.ConfigDict:
  """The config saved by a run in workdir.

  With `defaults` (configs.base_config()), fields the saved config lacks - it was written
  before they existed - are filled from it, with one warning naming them. A field is only
  ever added with a default that keeps the older behaviour, so the run reads as it was.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  root = storage.path(workdir)
  if root.exists() and not root.is_dir():
    raise CheckpointError(
      f'--workdir={workdir} is a file, not a directory: give the --workdir of a training run.'
    )
  try:
    saved = json.loads(storage.path(path).read_text())
  except FileNotFoundError:
    raise CheckpointError(f'{path} does not exist: {workdir} is not a pixel_jax workdir.') from None
  except OSError as e:
    raise CheckpointError(f'cannot read {path}: {e.strerror}.') from None
  except (json.JSONDecodeError, TypeError, ValueError) as e:
    raise CheckpointError(f'{path} is not a valid config file ({e}).') from None
  if not isinstance(saved, dict):
    raise CheckpointError(f'{path} is not a valid config file (not a JSON object).')
  if defaults is not None:
    added = _fill_missing(saved, defaults.to_dict())
    if added:
      logging.warning(
        '%s predates the fields %s; reading them as these defaults.',
        path,
        ', '.join(f'config.{name}={value!r}' for name, value in added),
      )
  return ml_collections.ConfigDict(saved)


def _fill_missing(saved: dict, defaults: dict, prefix: str = '') -> list[tuple[str, Any]]:
  """Adds to `saved` (in place) every leaf of `defaults` it lacks; returns what was added."""
  added: list[tuple[str, Any]] = []
  for key, value in defaults.items():
    if key not in saved:
      saved[key] = value
      added.append((prefix + key, value))
    elif isinstance(value, dict) and isinstance(saved[key], dict):
      added += _fill_missing(saved[key], value, f'{prefix}{key}.')
  return added


def check_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises CheckpointError when workdir holds a run whose model differs from `config`.

  Training fields (num_steps, learning rate, ...) may change between runs; the model and the
  data shape may not, since the checkpoints would not fit.
  """
  if not (storage.path(workdir) / CONFIG_FILE).exists():
    return
  old, new = load_config(workdir).to_dict(), json.loads(config.to_json_best_effort())
  diffs = []
  for field in MODEL_FIELDS:
    a, b = _get(old, field), _get(new, field)
    if isinstance(a, dict) and isinstance(b, dict):
      keys = sorted(set(a) | set(b))
      # A field the old run lacks was added later, with a default that keeps the older
      # model: it is no difference (the restore still checks every parameter's shape).
      diffs += [
        f'{field}.{k}: {a.get(k)!r} -> {b.get(k)!r}'
        for k in keys
        if k in a and a.get(k) != b.get(k)
      ]
    elif a != b:
      diffs.append(f'{field}: {a!r} -> {b!r}')
  if diffs:
    raise CheckpointError(
      f'{workdir} holds a run with a different model config '
      f'({"; ".join(diffs)}); use a new --workdir or the old config.'
    )


def _check_directory(path: str) -> None:
  """Refuses a checkpoint directory that holds anything but orbax step directories."""
  directory = storage.path(path)
  if not directory.exists():
    return
  if not directory.is_dir():
    raise CheckpointError(
      f'{path} is not a directory; nothing was deleted. Use another --workdir or move it away.'
    )
  foreign = sorted(
    p.name
    for p in directory.iterdir()
    if not (
      (p.name.isdigit() and p.is_dir())
      or _TMP.match(p.name)
      or (p.name == DELETED_STEPS_DIR and p.is_dir())
    )
  )
  if foreign:
    raise CheckpointError(
      f'{path} is not a pixel_jax checkpoint directory (it holds '
      f'{", ".join(foreign[:5])}); nothing was deleted. Use another '
      '--workdir or move it away.'
    )


def optimizer_changes(workdir: str, config: ml_collections.ConfigDict) -> list[str]:
  """What differs in config.optim between the run saved in workdir and `config`, in words:
  ['optimizer changed from rmsprop to adam', 'config.optim.grad_clip_norm changed from 1.0
  to 0.0'] (empty when there is no saved config)."""
  if not (storage.path(workdir) / CONFIG_FILE).exists():
    return []
  old = _get(load_config(workdir).to_dict(), 'optim') or {}
  new = _get(json.loads(config.to_json_best_effort()), 'optim') or {}
  changes = []
  if old.get('name') != new.get('name'):
    changes.append(f'optimizer changed from {old.get("name")} to {new.get("name")}')
  changes += [
    f'config.optim.{k} changed from {old.get(k)!r} to {new.get(k)!r}'
    for k in sorted(set(old) | set(new))
    if k != 'name' and old.get(k) != new.get(k)
  ]
  return changes


def parse_checkpoint_flag(value: Union[str, int, None]) -> Union[str, int]:
  """--checkpoint: 'best', 'latest' or a step number (int); anything else is an error."""
  if value is None:
    return 'best'
  if isinstance(value, int) or value in ('best', 'latest'):
    return value
  try:
    return int(value)
  except ValueError:
    raise CheckpointError(
      f'--checkpoint={value}: --checkpoint must be an integer (a step), "best" or "latest".'
    ) from None


# ----------------------------------------------------------------------------------------
# Checksums of a state's content.


def _host_array(x: Any) -> np.ndarray:
  """The full value of a (replicated) leaf as numpy, also on a multi-host mesh."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = x.addressable_data(0)
  return np.asarray(x)


def _tree_digest(tree: Any) -> str:
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    a = np.ascontiguousarray(_host_array(leaf))
    h.update(f'{a.dtype.str}{a.shape};'.encode())
    h.update(a.tobytes())
  return h.hexdigest()


def _part(state: Any, name: str) -> Any:
  return state[name] if isinstance(state, dict) else getattr(state, name)


def checksums(state: Any) -> dict[str, str]:
  """{'step', 'params', 'opt_state'}: SHA-256 of each part's arrays (dtype, shape, bytes)."""
  return {name: _tree_digest(_part(state, name)) for name in ('step', 'params', 'opt_state')}


def _shapes(tree: Any) -> dict[str, tuple]:
  """{'['dense']['kernel']': shape} of a tree of arrays or of orbax array metadata."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in flat}


def _reason(e: BaseException) -> str:
  return ' '.join(f'{type(e).__name__}: {e}'.split())[:300]


class _Corrupt(Exception):
  """A checkpoint that cannot be read back as it was written (internal)."""


def _state_handler() -> ocp.StandardCheckpointHandler:
  """orbax's StandardCheckpointHandler (same files, same metadata) that writes each
  replicated array from its first replica only.

  By default orbax splits a replicated array into one slice per replica ("replica-parallel"
  writes), which compiles and runs one slicing computation per array and replica: ~1 s per
  process start and ~0.3 s per save on 8 devices, for arrays of a few KB to a few MB here.
  Orbax already leaves it off on GPUs. The array handler lives in this handler's own
  registry, so other orbax users in the process keep their defaults.
  """
  array_handler = copy.copy(ocp.type_handlers.get_type_handler(jax.Array))
  array_handler._use_replica_parallel = False  # pylint: disable=protected-access
  registry = ocp.type_handlers.create_type_handler_registry((jax.Array, array_handler))
  handler = ocp.StandardCheckpointHandler()
  handler._impl = ocp.PyTreeCheckpointHandler(type_handler_registry=registry)  # pylint: disable=protected-access
  return handler


class Checkpointer:
  """The latest-N manager and the best-by-validation manager of one workdir.

  `read_only=True` (evaluate, sample) creates nothing and moves nothing: a corrupt checkpoint
  is skipped with a warning instead of being set aside.
  """

  def __init__(self, workdir: str, keep: int = 3, async_save: bool = True, read_only: bool = False):
    if keep < 1:
      raise ValueError(f'config.train.keep_checkpoints={keep} must be >= 1.')
    self.workdir = os.fspath(storage.path(workdir))  # Absolute, or a URI (gs://...).
    self.read_only = read_only
    self.keep = keep
    self.latest_dir = os.path.join(self.workdir, LATEST_DIR)
    self.best_dir = os.path.join(self.workdir, BEST_DIR)
    self.set_aside_dir = os.path.join(self.workdir, SET_ASIDE_DIR)
    for path in (self.latest_dir, self.best_dir):
      _check_directory(path)

    def manager(directory, **options):
      return ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(**options),
        item_handlers={
          'state': _state_handler(),
          'checksums': ocp.JsonCheckpointHandler(),
        },
      )

    best = dict(best_fn=lambda m: m['eval_loss'], best_mode='min')
    if read_only:
      options = dict(read_only=True, save_interval_steps=0, create=False)
      self._latest = manager(self.latest_dir, **options)
      self._best = manager(self.best_dir, **options, **best)
      return
    # Orbax deletes a local step file by file (a kill mid-way would leave a step directory
    # that is neither whole nor gone); a rename into DELETED_STEPS_DIR is atomic. Object
    # stores have no atomic rename and keep orbax's own deletion.
    trash = None if storage.is_uri(self.workdir) else DELETED_STEPS_DIR
    self._latest = manager(
      self.latest_dir,
      max_to_keep=keep,
      create=True,
      enable_async_checkpointing=async_save,
      todelete_subdir=trash,
    )
    self._best = manager(
      self.best_dir,
      max_to_keep=1,
      keep_checkpoints_without_metrics=False,
      create=True,
      enable_async_checkpointing=async_save,
      todelete_subdir=trash,
      **best,
    )
    for which in ('latest', 'best'):
      self._empty_deleted_steps(which)

  def _empty_deleted_steps(self, which: str) -> None:
    """Deletes the steps renamed into DELETED_STEPS_DIR (while no save of `which` runs)."""
    trash = storage.path(self._directory(which)) / DELETED_STEPS_DIR
    if jax.process_index() == 0 and trash.exists():
      trash.rmtree()

  def _manager(self, which: str) -> ocp.CheckpointManager:
    return self._best if which == 'best' else self._latest

  def _directory(self, which: str) -> str:
    return self.best_dir if which == 'best' else self.latest_dir

  def latest_step(self) -> Optional[int]:
    return self._latest.latest_step()

  def best_step(self) -> Optional[int]:
    return self._best.best_step()

  def steps(self, which: str = 'latest') -> Sequence[int]:
    return sorted(self._manager(which).all_steps())

  @staticmethod
  def _save_args(state: Any) -> ocp.args.Composite:
    return ocp.args.Composite(
      state=ocp.args.StandardSave(state), checksums=ocp.args.JsonSave(checksums(state))
    )

  def save(self, step: int, state: Any) -> None:
    """Starts an (asynchronous) save of `state` as `step`.

    A step that is already on disk (a resumed run redoing steps whose checkpoint survived,
    e.g. after a corrupt later one was set aside) is kept if it holds the same state and set
    aside first otherwise.
    """
    if self._replace_existing('latest', step, state):
      self._latest.save(step, args=self._save_args(state), force=True)

  def save_best(self, step: int, state: Any, eval_loss: float) -> None:
    """Offers `state` to the best manager, which keeps only the lowest eval_loss."""
    if self._replace_existing('best', step, state):
      self._best.save(
        step, args=self._save_args(state), metrics={'eval_loss': float(eval_loss)}, force=True
      )

  def _replace_existing(self, which: str, step: int, state: Any) -> bool:
    """Whether `step` must be written: False when the same state is already on disk."""
    manager = self._manager(which)
    manager.wait_until_finished()
    self._empty_deleted_steps(which)
    if step not in manager.all_steps():
      return True
    try:
      saved = manager.restore(step, args=ocp.args.Composite(checksums=ocp.args.JsonRestore()))[
        'checksums'
      ]
      if saved == checksums(state):
        return False
    except Exception:  # pylint: disable=broad-except
      pass
    self._set_aside(which, step, 'a different state of the same step is being saved')
    return True

  def drop_steps_beyond_keep(self) -> None:
    """Deletes the steps orbax would have deleted after the last save: the oldest beyond
    `keep` (latest) and all but the lowest validation loss (best). For a resumed run, after
    its restore.

    orbax deletes them only once a new step is committed, so a run killed in between leaves
    them, and a run resumed at its last step may save nothing that would delete them.
    """
    for which in ('latest', 'best'):
      manager = self._manager(which)
      steps = sorted(manager.all_steps())
      kept = [manager.best_step()] if which == 'best' else steps[-self.keep :]
      for step in steps:
        if step not in kept:
          manager.delete(step)
      self._empty_deleted_steps(which)

  def _set_aside(self, which: str, step: int, reason: str) -> str:
    """Moves checkpoint `step` out of the managed directory; returns where it went."""
    source = os.path.join(self._directory(which), str(step))
    target = os.path.join(self.set_aside_dir, f'{os.path.basename(self._directory(which))}_{step}')
    k = 1
    while storage.path(target).exists():
      k += 1
      target = os.path.join(
        self.set_aside_dir, f'{os.path.basename(self._directory(which))}_{step}.{k}'
      )
    if jax.process_index() == 0:
      storage.path(self.set_aside_dir).mkdir(parents=True, exist_ok=True)
      storage.path(source).rename(target)
    self._manager(which).reload()
    logging.warning('Checkpoint %s is unusable (%s); moved to %s.', source, reason, target)
    return target

  def _restore_step(self, manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> Any:
    """The verified state of `step`; raises _Corrupt, CheckpointError (another model) or
    OptimizerChangedError."""
    path = os.path.join(str(manager.directory), str(step))
    try:
      saved = manager.item_metadata(step)['state']
      # orbax >= 0.11 wraps the tree of array metadata in an object; older ones return it.
      saved = getattr(saved, 'tree', saved)
      saved_params = _shapes(saved['params'])
    except Exception as e:  # pylint: disable=broad-except
      raise _Corrupt(f'its metadata cannot be read: {_reason(e)}') from e
    wanted = _shapes(_part(abstract_state, 'params'))
    if saved_params != wanted:
      diff = sorted(set(saved_params.items()) ^ set(wanted.items()))[0][0]
      raise CheckpointError(
        f'Checkpoint {path} was written for another model: parameter {diff} is '
        f'{saved_params.get(diff, "absent")} there and {wanted.get(diff, "absent")} in this '
        'config. Nothing was deleted; use the config of that run or another --workdir.'
      )
    if sorted(map(str, _shapes(saved['opt_state']).values())) != sorted(
      map(str, _shapes(_part(abstract_state, 'opt_state')).values())
    ):
      raise OptimizerChangedError(f'Checkpoint {path} holds the state of another optimizer.')
    try:
      restored = manager.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), checksums=ocp.args.JsonRestore()
        ),
      )
    except ValueError as e:
      if 'tree structures do not match' in str(e):
        raise OptimizerChangedError(
          f'Checkpoint {path} holds the state of another optimizer.'
        ) from e
      raise _Corrupt(_reason(e)) from e
    except Exception as e:  # pylint: disable=broad-except
      raise _Corrupt(_reason(e)) from e
    state, expected = restored['state'], restored['checksums']
    actual = checksums(state)
    bad = [name for name in actual if expected.get(name) != actual[name]]
    if bad:
      raise _Corrupt(f'checksum mismatch in {", ".join(bad)}')
    return state

  def restore(
    self, abstract_state: Any, step: Optional[int] = None, which: str = 'latest'
  ) -> tuple[Any, int]:
    """Restores `which` ('latest' | 'best') into the structure/shardings of abstract_state.

    Returns (state, step). Without `step`, the newest checkpoint that passes its checksums:
    each one that fails is set aside (renamed into checkpoints_set_aside/; in read-only mode
    only skipped) with one warning. A requested `step` that is missing or corrupt, a
    checkpoint of another model, or no usable checkpoint at all raises CheckpointError (one
    line); OptimizerChangedError when only the optimiser state does not fit.
    """
    manager = self._manager(which)
    directory = self._directory(which)
    available = self.steps(which)
    if step is not None:
      if step not in available:
        listed = ', '.join(map(str, available)) or 'none'
        raise CheckpointError(
          f'Checkpoint step {step} not found in {directory}; available: {listed}.'
        )
      try:
        return self._restore_step(manager, step, abstract_state), step
      except _Corrupt as e:
        raise CheckpointError(
          f'Checkpoint {os.path.join(directory, str(step))} is corrupt ({e}). Nothing was deleted.'
        ) from e
    if which == 'best':
      first = manager.best_step()
      candidates = [first] + [s for s in reversed(available) if s != first]
    else:
      candidates = list(reversed(available))
    if not candidates or candidates[0] is None:
      raise CheckpointError(f'No checkpoint in {directory}.')
    for candidate in candidates:
      try:
        return self._restore_step(manager, candidate, abstract_state), candidate
      except _Corrupt as e:
        if self.read_only:
          logging.warning(
            'Checkpoint %s is corrupt (%s); trying an older one.',
            os.path.join(directory, str(candidate)),
            e,
          )
        else:
          self._set_aside(which, candidate, f'corrupt: {e}')
    where = directory if self.read_only else self.set_aside_dir
    raise CheckpointError(
      f'No usable checkpoint in {directory}: every one is corrupt (see '
      f'{where}; nothing was deleted). Rerun the same command to start '
      'from step 0.'
      if not self.read_only
      else f'No usable checkpoint in {directory}: every one is corrupt.'
    )

  def restore_params(self, abstract_params: Any, step: int, which: str = 'latest') -> Any:
    """Only the parameters of checkpoint `step` (verified), placed like abstract_params:
    for a run whose optimiser changed."""
    manager = self._manager(which)
    path = os.path.join(self._directory(which), str(step))
    try:
      restored = manager.restore(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardRestore(), checksums=ocp.args.JsonRestore()),
      )
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
        f'Checkpoint {path} is corrupt ({_reason(e)}). Nothing was deleted.'
      ) from e
    params = restored['state']['params']
    if _tree_digest(params) != restored['checksums'].get('params'):
      raise CheckpointError(
        f'Checkpoint {path} is corrupt (checksum mismatch in params). Nothing was deleted.'
      )
    params = jax.tree.unflatten(jax.tree.structure(abstract_params), jax.tree.leaves(params))
    return jax.tree.map(lambda x, a: jax.device_put(x, a.sharding), params, abstract_params)

  def wait(self) -> None:
    """Blocks until every asynchronous save is on disk."""
    self._latest.wait_until_finished()
    self._best.wait_until_finished()
    if not self.read_only:
      for which in ('latest', 'best'):
        self._empty_deleted_steps(which)

  def close(self) -> None:
    self.wait()
    self._latest.close()
    self._best.close()
