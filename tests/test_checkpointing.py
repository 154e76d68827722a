"""Checkpoints: round trip, refusal of foreign directories and of another model."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import tiny
from pixel_jax import checkpointing
from pixel_jax import models
from pixel_jax import optim
from pixel_jax import runs
from pixel_jax import sharding
from pixel_jax import train
from pixel_jax import train_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parts(config):
  mesh = sharding.make_mesh(config.mesh.num_devices)
  model = models.get_model(config)
  tx = optim.make_optimizer(config)
  return mesh, model, tx


def _snapshot(root) -> dict:
  """Every file under root with its size: to prove that nothing was deleted or changed
  (the run's lock and log files aside)."""
  out = {}
  for dirpath, _, files in os.walk(root):
    for f in files:
      if f in ('pixel_jax.lock', 'pixel_jax.log'):
        continue
      path = os.path.join(dirpath, f)
      out[os.path.relpath(path, root)] = os.path.getsize(path)
  return out


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip(tmp_path):
  config = tiny.get_config()
  mesh, model, tx = _parts(config)
  state = train_state.init_state(config, model, tx, mesh)
  state = state.replace(step=state.step + 7)
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=2)
  ckpt.save(7, state)
  ckpt.wait()
  assert ckpt.latest_step() == 7
  restored, step = ckpt.restore(train_state.abstract_state(config, model, tx, mesh))
  ckpt.close()
  assert step == 7 and int(restored.step) == 7
  _assert_trees_equal(state, restored)
  leaf = jax.tree.leaves(restored.params)[0]
  assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 8


@pytest.fixture(name='saved_run_template', scope='module')
def fixture_saved_run_template(tmp_path_factory):
  """A workdir with config.json and one real checkpoint (no training), built once."""
  config = tiny.get_config()
  mesh, model, tx = _parts(config)
  workdir = tmp_path_factory.mktemp('template')
  ckpt = checkpointing.Checkpointer(str(workdir), keep=2)
  ckpt.save(3, train_state.init_state(config, model, tx, mesh))
  ckpt.close()
  checkpointing.save_config(str(workdir), config)
  return workdir


@pytest.fixture(name='saved_run')
def fixture_saved_run(saved_run_template, tmp_path):
  """A fresh copy of the template workdir, with its config."""
  workdir = tmp_path / 'run'
  shutil.copytree(saved_run_template, workdir)
  return tiny.get_config(), workdir


def _expect_refusal(config, workdir, match):
  before = _snapshot(workdir)
  with pytest.raises(checkpointing.CheckpointError, match=match) as info:
    train.train_and_evaluate(config, str(workdir))
  assert '\n' not in str(info.value)  # One line.
  assert _snapshot(workdir) == before  # Nothing deleted or rewritten.
  return str(info.value)


def test_foreign_files_in_checkpoint_directory_are_refused(saved_run):
  config, workdir = saved_run
  (workdir / 'checkpoints' / 'notes.txt').write_text('my results')
  _expect_refusal(config, workdir, 'not a pixel_jax checkpoint directory .*notes.txt')


def test_other_model_checkpoint_is_refused(saved_run):
  config, workdir = saved_run
  (workdir / 'config.json').unlink()  # Without the config check, restore itself must refuse.
  config.model.hidden_channels = 16
  _expect_refusal(
    config,
    workdir,
    r'written for another model: parameter \[.*\] is \(16,\) '
    r'there and \(32,\) in this config',
  )


def test_resume_with_another_model_config_is_refused(saved_run):
  config, workdir = saved_run
  config.model.num_layers = 3
  config.train.num_steps = 99  # Training fields may change; the model may not.
  _expect_refusal(config, workdir, r'different model config \(model.num_layers: 2 -> 3\)')


def test_restore_run(saved_run):
  """runs.restore_run: 'best' falls back to the latest, a step number is that step, and a
  step or a name that is not there is one CheckpointError line."""
  config, workdir = saved_run
  run = runs.restore_run(str(workdir))
  assert (run.step, run.checkpoint, int(run.state.step)) == (3, 'latest', 0)
  assert run.config.model.to_dict() == config.model.to_dict()
  assert runs.restore_run(str(workdir), '3').step == 3
  with pytest.raises(
    checkpointing.CheckpointError, match=r'Checkpoint step 4 not found in .*; available: 3\.'
  ):
    runs.restore_run(str(workdir), '4')
  with pytest.raises(
    checkpointing.CheckpointError, match=r'--checkpoint=final: --checkpoint must be an integer'
  ):
    runs.restore_run(str(workdir), 'final')
  config.model.hidden_channels += 2
  with pytest.raises(checkpointing.CheckpointError, match='different model config'):
    runs.restore_run(str(workdir), config=config)


def test_config_saved_before_newer_fields_restores_and_resumes(saved_run):
  """A config.json written before fields existed reads them as their defaults (one
  warning) for evaluation and sampling, and a resume with today's config accepts it."""
  config, workdir = saved_run
  path = workdir / 'config.json'
  saved = json.loads(path.read_text())
  del saved['model']['out_hidden_layers'], saved['sample']['temperature']
  path.write_text(json.dumps(saved))
  run = runs.restore_run(str(workdir))
  assert run.config.model.out_hidden_layers == config.model.out_hidden_layers
  assert run.config.sample.temperature == config.sample.temperature
  checkpointing.check_config(str(workdir), config)  # No "different model config".
  config.model.out_hidden_layers += 1  # A real difference in a field it does record is
  config.model.num_layers += 1  # still refused.
  with pytest.raises(checkpointing.CheckpointError, match='model.num_layers: 2 -> 3'):
    checkpointing.check_config(str(workdir), config)


@pytest.mark.slow
def test_cli_reports_corrupt_directory_in_one_line(saved_run):
  _, workdir = saved_run
  (workdir / 'checkpoints' / 'junk').write_text('x')
  before = _snapshot(workdir)
  env = dict(os.environ, PYTHONPATH=os.path.join(REPO, 'src'))
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'pixel_jax.main',
      f'--config={REPO}/experiments/tiny.py',
      f'--workdir={workdir}',
    ],
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('pixel_jax: error: ') and 'nothing was deleted' in last
  assert 'Traceback' not in result.stderr
  assert _snapshot(workdir) == before


def test_steps_leave_whole_and_a_killed_deletion_is_finished(tmp_path):
  """Steps beyond `keep` leave by an atomic rename; what a deletion killed mid-way left in
  deleted_steps/ (files already gone) is removed when the directory is opened again."""
  config = tiny.get_config()
  mesh, model, tx = _parts(config)
  state = train_state.init_state(config, model, tx, mesh)
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=2)
  for step in (1, 2, 3):
    ckpt.save(step, state.replace(step=state.step + step))
  ckpt.close()
  latest = tmp_path / checkpointing.LATEST_DIR
  assert sorted(os.listdir(latest)) == ['2', '3']  # Step 1 went; nothing of it is left.
  # A kill during the deletion of step 2: its directory is already out of the step list,
  # half its files are gone.
  trash = latest / checkpointing.DELETED_STEPS_DIR
  trash.mkdir()
  os.rename(latest / '2', trash / '2')
  metadata = trash / '2' / '_CHECKPOINT_METADATA'
  assert metadata.exists()
  metadata.unlink()
  reopened = checkpointing.Checkpointer(str(tmp_path), keep=2)
  assert reopened.steps('latest') == [3] and not trash.exists()
  restored, step = reopened.restore(train_state.abstract_state(config, model, tx, mesh))
  reopened.close()
  assert step == 3 and int(restored.step) == 3


DIRS = {'latest': checkpointing.LATEST_DIR, 'best': checkpointing.BEST_DIR}


def test_steps_a_kill_left_beyond_keep_go_when_the_run_resumes(tmp_path):
  """A kill after a new step is committed and before orbax deleted the steps it replaces
  leaves them; the resumed run deletes them once it has restored its state."""
  config = tiny.get_config()
  keep = config.train.keep_checkpoints
  assert keep == 2  # One latest step (1) beyond it after step 3.
  mesh, model, tx = _parts(config)
  state = train_state.init_state(config, model, tx, mesh)
  states = {step: state.replace(step=state.step + step) for step in (1, 2, 3)}
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=keep)
  for step, loss in ((1, 2.0), (2, 1.0)):  # Step 2 is the better one: 1 is deleted.
    ckpt.save(step, states[step])
    ckpt.save_best(step, states[step], eval_loss=loss)
    ckpt.wait()
    if step == 1:
      for which, directory in DIRS.items():
        shutil.copytree(tmp_path / directory / '1', tmp_path / f'{which}_1')
  ckpt.save(3, states[3])
  ckpt.close()
  # What the kill left: the replaced steps back in place beside the new ones.
  for which, directory in DIRS.items():
    shutil.move(tmp_path / f'{which}_1', tmp_path / directory / '1')
  resumed = checkpointing.Checkpointer(str(tmp_path), keep=keep)
  assert resumed.steps('latest') == [1, 2, 3] and resumed.steps('best') == [1, 2]
  target = train_state.abstract_state(config, model, tx, mesh)
  restored, step = train.restore_or_init(config, str(tmp_path), resumed, model, tx, mesh, target)
  assert step == 3 and resumed.steps('latest') == [2, 3] and resumed.steps('best') == [2]
  _assert_trees_equal(restored, states[3])
  best, best_step = resumed.restore(target, which='best')
  resumed.close()
  assert best_step == 2
  _assert_trees_equal(best, states[2])
