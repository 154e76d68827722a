"""End-to-end training: bundled and mock data, divergence, the CLI, and no TensorFlow."""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from pixel_jax import checkpointing
from pixel_jax import evaluate
from pixel_jax import metrics_writer
from pixel_jax import models
from pixel_jax import optim
from pixel_jax import sharding
from pixel_jax import train
from pixel_jax import train_state
from pixel_jax.datasets import mnist_idx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Each core's loss over its first four steps: seed 0, the tiny config's network and Adam,
# one fixed batch of Bernoulli(0.3) pixels, one device. They change only when the numerics
# change on purpose (a layer, an initialiser, the optimiser); then recompute them here.
PINNED_LOSSES = {
  'row_lstm': [47.357033, 45.687160, 44.435070, 43.364746],
  'diagonal_bilstm': [47.566299, 45.685963, 44.196018, 42.979401],
  'pixelcnn': [50.112724, 47.610744, 45.605053, 43.997311],
}


@pytest.mark.parametrize('name', sorted(PINNED_LOSSES))
def test_losses_at_a_fixed_seed_are_pinned(tiny_config, name):
  config = tiny_config(name)
  model = models.get_model(config)
  tx = optim.make_optimizer(config)
  mesh = sharding.make_mesh(1)
  state = train_state.init_state(config, model, tx, mesh)
  step = train.make_train_step(model, tx, mesh)
  images = np.random.default_rng(0).random((8, 8, 8, 1)) < 0.3
  batch = sharding.shard_global_batch(images.astype(np.uint8), mesh)
  got = []
  for _ in PINNED_LOSSES[name]:
    state, metrics = step(state, batch, None)
    got.append(float(metrics['nll_nats']))
  np.testing.assert_allclose(got, PINNED_LOSSES[name], rtol=1e-4)


def test_two_call_step_on_cpu_is_the_one_call_step(tiny_config):
  """On CPU the loop's step is two compiled calls (forward; backward and update), elsewhere
  `one_call`: the same arithmetic, so the same losses, gradient norms and parameters."""
  config = tiny_config('pixelcnn')
  model = models.get_model(config)
  tx = optim.make_optimizer(config)
  mesh = sharding.make_mesh(1)
  step = train.make_train_step(model, tx, mesh)
  assert step.split  # The tests run on CPU.
  images = np.random.default_rng(1).random((8, 8, 8, 1)) < 0.3
  batch = sharding.shard_global_batch(images.astype(np.uint8), mesh)
  runs = []
  for call in (step, step.one_call):
    state = train_state.init_state(config, model, tx, mesh)
    metrics = []
    for _ in range(2):
      state, m = call(state, batch, None)
      metrics.append((float(m['nll_nats']), float(m['grad_norm']), bool(m['finite'])))
    runs.append((jax.device_get(state.params), metrics))
  np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-5)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), *[r[0] for r in runs]
  )


@pytest.mark.slow  # Trains end to end.
def test_train_on_bundled_digits(tmp_path, tiny_config):
  config = tiny_config()
  state, summary = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == config.train.num_steps == summary['steps']
  assert summary['unit'] == 'nats'
  assert np.isfinite(summary['train_loss']) and np.isfinite(summary['eval_loss'])
  # Falling loss: from ~64 ln 2 = 44 nats at initialisation.
  assert summary['train_loss'] < 0.8 * summary['initial_train_loss']
  records = metrics_writer.read_jsonl(str(tmp_path / 'metrics.jsonl'))
  losses = [r['train_loss'] for r in records if 'train_loss' in r]
  assert len(losses) == config.train.num_steps // config.train.log_every
  assert losses[-1] < losses[0]
  evals = [r for r in records if 'eval_loss' in r]
  assert [r['step'] for r in evals] == [15, 30]
  assert evals[-1]['eval_loss'] == pytest.approx(summary['eval_loss'])
  # The bundled digits have no test split without data.idx_dir: reported, not fatal.
  assert summary['test_loss'] is None and 'idx_dir' in summary['test_error']
  png = tmp_path / 'samples' / 'step_30.png'
  assert png.stat().st_size > 0
  assert os.listdir(tmp_path / 'tensorboard')
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['20', '30']  # keep_checkpoints=2
  assert summary['best_step'] == 30
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['model']['hidden_channels'] == 8
  # pixel_jax.evaluate rebuilds the model from config.json and restores the best checkpoint.
  result = evaluate.evaluate(
    checkpointing.load_config(str(tmp_path)), str(tmp_path), split='validation'
  )
  assert result['checkpoint'] == 'best' and result['step'] == 30
  assert result['loss'] == pytest.approx(summary['eval_loss'], rel=1e-5)
  assert result['num_examples'] == config.eval.max_examples
  assert result['data'] == 'mnist_bundled'
  # The bundled digits have no test split: evaluate names the IDX files it really reads.
  idx_dir = tmp_path / 'idx'
  idx_dir.mkdir()
  digits = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
  for name, array, magic in (
    ('t10k-images-idx3-ubyte', digits, mnist_idx.IMAGE_MAGIC),
    ('t10k-labels-idx1-ubyte', np.arange(6), mnist_idx.LABEL_MAGIC),
  ):
    header = b''.join(d.to_bytes(4, 'big') for d in (magic,) + array.shape)
    (idx_dir / name).write_bytes(header + array.astype(np.uint8).tobytes())
  config = checkpointing.load_config(str(tmp_path))
  config.data.update(idx_dir=str(idx_dir), data_dir=str(tmp_path / 'tfds'))
  result = evaluate.evaluate(config, str(tmp_path), split='test')
  assert result['data'] == f'mnist_idx (idx_dir={idx_dir})' and result['num_examples'] == 6


class _FewLevels:
  """A data source of 8x8 RGB images using only 16 of the 256 levels (learnable fast)."""

  def __init__(self, num):
    rng = np.random.default_rng(0)
    self.images = (rng.integers(0, 16, (num, 8, 8, 3)) * 16).astype(np.uint8)

  def __len__(self):
    return len(self.images)

  def __getitem__(self, k):
    return {'image': self.images[k], 'label': 0}

  def __getitems__(self, keys):
    return [self[k] for k in keys]


def test_train_on_mock_colour_data(tmp_path, tiny_config):
  """tfds.testing.mock_data: a catalog colour dataset, reported in bits/dim."""
  config = tiny_config()
  config.train.update(num_steps=20, eval_every=0, sample_every=0, checkpoint_every=0, log_every=5)
  config.data.name = 'cifar10'
  config.data.image_size, config.data.num_channels, config.data.num_levels = 8, 3, 256
  config.data.binarization, config.data.allow_fallback = 'none', False
  config.data.eval_split = config.data.test_split = 'test'
  config.model.hidden_channels, config.model.out_hidden_channels = 6, 24
  config.optim.learning_rate = 3e-2
  config.eval.max_examples = 16
  source = lambda *args, **kwargs: _FewLevels(64)
  with tfds.testing.mock_data(as_data_source_fn=source):
    _, summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['unit'] == 'bits/dim'
  assert 7.0 < summary['initial_train_loss'] < 9.0  # ~log2(256) at initialisation.
  # 16 equally likely levels are 4 bits/dim; the model must head there.
  assert summary['train_loss'] < summary['initial_train_loss'] - 1.0
  assert np.isfinite(summary['test_loss'])
  # Every record carries the elapsed time: training (pauses excluded) within the wall time.
  records = metrics_writer.read_jsonl(str(tmp_path / 'metrics.jsonl'))
  windows = [r for r in records if 'train_loss' in r]
  assert [r['step'] for r in windows] == [5, 10, 15, 20] and 'eval_loss' in records[-2]
  assert all(0 < r['train_time_s'] <= r['wall_time_s'] for r in records)
  train_s = [r['train_time_s'] for r in records]
  assert train_s == sorted(train_s)
  # Between the last window and the final record the run only evaluates (the last step's
  # evaluation, then the test set): wall time passes, training time (nearly) does not.
  last, final = windows[-1], records[-1]
  wall_s = final['wall_time_s'] - last['wall_time_s']
  assert final['train_time_s'] - last['train_time_s'] < 0.5 * wall_s
  assert summary['train_time_s'] == pytest.approx(final['train_time_s'])


def test_train_clock_excludes_pauses_and_continues_a_resumed_count():
  ticks = iter([10.0, 11.0, 13.0, 20.0, 22.0, 22.0, 25.0])
  history = [
    {'step': 5, 'train_loss': 9.0, 'train_time_s': 1.0, 'wall_time_s': 2.0},
    {'step': 10, 'eval_loss': 9.0, 'train_time_s': 4.0, 'wall_time_s': 8.0},
  ]
  clock = train.TrainClock(t0=9.0, history=history, now=lambda: next(ticks))
  assert clock.train_time_s() == 4.0  # Before the loop: the resumed count.
  clock.start_training()  # 10
  with clock.pause():  # 11 to 13: an evaluation.
    assert clock.train_time_s() == 4.0 + 1.0  # In a pause: frozen at its start (no tick).
  assert clock.fields() == {'train_time_s': 4.0 + 10.0 - 2.0, 'wall_time_s': 8.0 + 22.0 - 9.0}
  clock.stop_training()  # 22: the final test evaluation is not training.
  assert clock.train_time_s() == 4.0 + 12.0 - 2.0
  assert clock.wall_time_s() == 8.0 + 25.0 - 9.0
  # A fresh run counts from zero.
  assert train.TrainClock(t0=0.0, history=[], now=lambda: 3.0).fields() == {
    'train_time_s': 0.0,
    'wall_time_s': 3.0,
  }


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_config):
  config = tiny_config()
  config.train.update(num_steps=20, checkpoint_every=1, eval_every=0, sample_every=0)
  config.optim.learning_rate = 1e30  # Weights ~1e30 after one step: inf/NaN logits next.
  config.optim.grad_clip_norm = 0.0
  with pytest.raises(train.TrainingDivergedError, match=r'at step (\d+)') as info:
    train.train_and_evaluate(config, str(tmp_path))
  bad_step = int(re.search(r'at step (\d+)', str(info.value)).group(1))
  assert 1 < bad_step < config.train.num_steps
  steps = sorted(int(s) for s in os.listdir(tmp_path / 'checkpoints'))
  assert steps and max(steps) == bad_step - 1  # The NaN state was never written.
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=2)
  model = models.get_model(config)
  tx = optim.make_optimizer(config)
  mesh = sharding.make_mesh(config.mesh.num_devices)
  state, step = ckpt.restore(train_state.abstract_state(config, model, tx, mesh))
  ckpt.close()
  assert step == bad_step - 1
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


def _run_python(code: str, cwd: str, timeout: int = 240) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=os.path.join(REPO, 'src'))
  return subprocess.run(
    [sys.executable, '-c', code],
    cwd=cwd,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


@pytest.mark.slow
def test_cli_trains_offline_without_tensorflow(tmp_path):
  """`python -m pixel_jax.main` as a user runs it; TensorFlow is never imported."""
  workdir = tmp_path / 'run'
  code = f"""
import runpy, sys
sys.argv = ['pixel_jax.main', '--config={REPO}/experiments/tiny.py', '--workdir={workdir}',
            '--config.train.num_steps=10', '--config.train.sample_every=0',
            '--config.train.eval_every=5', '--config.eval.max_examples=32']
try:
  runpy.run_module('pixel_jax.main', run_name='__main__')
except SystemExit as e:
  assert not e.code, e.code
tf = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.'))
print('TF_MODULES', tf)
"""
  result = _run_python(code, cwd=str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'TF_MODULES []' in result.stdout
  assert 'Done: 10 steps' in result.stdout
  assert (workdir / 'checkpoints' / '10').is_dir()

  # A bad override fails with one line naming the field, before any work.
  bad = _run_python(
    f"import runpy, sys; sys.argv = ['m', '--config={REPO}/experiments/tiny.py', "
    f"'--workdir={tmp_path}/bad', '--config.train.batch_size=12']; "
    "runpy.run_module('pixel_jax.main', run_name='__main__')",
    cwd=str(tmp_path),
  )
  assert bad.returncode == 1
  assert (
    bad.stderr.strip().splitlines()[-1].startswith('pixel_jax: error: config.train.batch_size=12')
  )
