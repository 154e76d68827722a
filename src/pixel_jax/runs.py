"""A training run as the tools see it: its data (`open_data`) and `restore_run(workdir)`.

Training writes a workdir (config.json and checkpoints, see checkpointing.py); evaluation,
sampling and notebooks rebuild the model from it with `restore_run`, the one place that
turns a workdir into (config, model, state, step).
"""

import dataclasses
from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from pixel_jax import checkpointing
from pixel_jax import configs
from pixel_jax import distributed
from pixel_jax import input_pipeline
from pixel_jax import models
from pixel_jax import optim
from pixel_jax import sharding
from pixel_jax import storage
from pixel_jax import train_state

# Errors the command-line tools report as one line instead of a traceback.
USER_ERRORS = (
  configs.ConfigError,
  checkpointing.CheckpointError,
  input_pipeline.DatasetUnavailableError,
  distributed.DistributedError,
)


def open_data(config: ml_collections.ConfigDict) -> input_pipeline.Dataset:
  """input_pipeline.open, with its field-naming ValueErrors as ConfigError.

  In a multi-process run, process 0 goes first (it may prepare the dataset in a shared
  data_dir); the others open it once that is done.
  """
  try:
    return distributed.chief_first(f'open {config.data.name}', lambda: input_pipeline.open(config))
  except ValueError as e:
    raise configs.ConfigError(str(e)) from e


def load_split(
  data: input_pipeline.Dataset, split: str
) -> np.ndarray | input_pipeline.StreamingSplit:
  """data.load(split), with its field-naming ValueErrors as ConfigError."""
  try:
    images = data.load(split)
  except ValueError as e:
    raise configs.ConfigError(str(e)) from e
  d = data.config.data
  expected = (d.image_size, d.image_size, d.num_channels)
  if tuple(images.shape[1:]) != expected:
    raise configs.ConfigError(
      f'Split {split!r} of config.data.name={d.name!r} has images of shape '
      f'{tuple(images.shape[1:])}, but config.data.image_size/num_channels say {expected}.'
    )
  return images


def load_labels(data: input_pipeline.Dataset, split: str) -> Optional[np.ndarray]:
  """The labels of `split` for a class-conditional config (None for an unconditional one),
  checked against config.model.num_classes; ValueErrors become ConfigError."""
  k = data.config.model.num_classes
  if not k:
    return None
  try:
    labels = data.load_labels(split)
  except ValueError as e:
    raise configs.ConfigError(str(e)) from e
  if labels.size and (labels.min() < 0 or labels.max() >= k):
    raise configs.ConfigError(
      f'Split {split!r} of config.data.name={data.config.data.name!r} has labels in '
      f'[{labels.min()}, {labels.max()}], but config.model.num_classes={k}; set it to at '
      f'least {labels.max() + 1}.'
    )
  return labels


@dataclasses.dataclass(frozen=True)
class RestoredRun:
  """A checkpoint of a training run, ready to evaluate or sample from."""

  config: ml_collections.ConfigDict
  model: Any
  state: train_state.TrainState  # Replicated on `mesh`.
  step: int
  checkpoint: str  # 'best' or 'latest': the manager it came from.
  mesh: jax.sharding.Mesh


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run in workdir saved, fields added since then read as their defaults."""
  return checkpointing.load_config(workdir, defaults=configs.base_config())


def _has_checkpoint(workdir: str) -> bool:
  for name in (checkpointing.LATEST_DIR, checkpointing.BEST_DIR):
    path = storage.path(workdir) / name
    if path.is_dir() and any(p.name.isdigit() for p in path.iterdir()):
      return True
  return False


def restore_run(
  workdir: str, checkpoint: str = 'best', config: Optional[ml_collections.ConfigDict] = None
) -> RestoredRun:
  """Rebuilds the model of a training run and restores one of its checkpoints.

  Args:
    workdir: the run's directory (python -m pixel_jax.main --workdir).
    checkpoint: 'best' (lowest validation loss; the latest when no run was evaluated yet),
      'latest', or a step number of the latest-N checkpoints.
    config: the config to build the model from; None reads the run's config.json. A given
      config may change data, evaluation and sampling fields, not the model
      (checkpointing.MODEL_FIELDS).

  Returns:
    The RestoredRun; the config has passed configs.validate.

  Raises:
    CheckpointError: a checkpoint name that is not one, no such workdir (or a file), no
      config.json, no checkpoint, a config whose model is not the run's, a step that is not
      there (the message lists those that are), or no checkpoint that loads (a corrupt
      newest one is skipped with a warning). Nothing is created or moved in the workdir.
    ConfigError: the config breaks the config contract (configs.validate).
  """
  wanted = checkpointing.parse_checkpoint_flag(checkpoint)
  root = storage.path(workdir)
  if root.exists() and not root.is_dir():
    raise checkpointing.CheckpointError(
      f'--workdir={workdir} is a file, not a directory: give the --workdir of a training run.'
    )
  if not root.is_dir():
    raise checkpointing.CheckpointError(
      f'{workdir} does not exist: give the --workdir of a training run.'
    )
  if config is None and not (storage.path(workdir) / checkpointing.CONFIG_FILE).exists():
    raise checkpointing.CheckpointError(
      f'{workdir} holds no {checkpointing.CONFIG_FILE}: not a pixel_jax training workdir '
      '(train first with python -m pixel_jax.main).'
    )
  if not _has_checkpoint(workdir):
    raise checkpointing.CheckpointError(
      f'{workdir} holds no checkpoint yet (nothing in {checkpointing.LATEST_DIR}/ or '
      f'{checkpointing.BEST_DIR}/).'
    )
  if config is None:
    config = load_config(workdir)
  configs.validate(config)
  checkpointing.check_config(workdir, config)  # A given config must build the run's model.
  try:
    mesh = sharding.make_mesh(config.mesh.num_devices)
  except ValueError as e:
    raise configs.ConfigError(str(e)) from None
  model = models.get_model(config)
  tx = optim.make_optimizer(config)
  target = train_state.abstract_state(config, model, tx, mesh)
  # Read-only: no lock, nothing created; a training run may be writing meanwhile (every
  # checkpoint appears by an atomic rename, so only whole ones are seen).
  ckpt = checkpointing.Checkpointer(workdir, read_only=True)
  try:
    which, step = 'latest', wanted if isinstance(wanted, int) else None
    if wanted == 'best' and ckpt.best_step() is not None:
      which = 'best'
    state, restored_step = ckpt.restore(target, step=step, which=which)
  finally:
    ckpt.close()
  return RestoredRun(
    config=config, model=model, state=state, step=int(restored_step), checkpoint=which, mesh=mesh
  )
