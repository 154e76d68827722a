"""Multi-host training as two real processes (one CPU device each) on 127.0.0.1.

The two processes must compute exactly what one process computes with two devices: the same
batches split the same way, the same all-reduced gradients. Training, resuming, sampling and
evaluating all run in the two-process job; only process 0 writes the workdir's files.
"""

import json
import os
import sys

import jax
import numpy as np
import pytest

from pixel_jax import distributed
from pixel_jax import input_pipeline
from pixel_jax import metrics_writer
from pixel_jax import runs
from pixel_jax import train

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import processes  # pylint: disable=g-import-not-at-top,wrong-import-position

TINY = os.path.join(processes.REPO, 'experiments', 'tiny.py')
NUM_STEPS = 6
OVERRIDES = {
  'train.log_every': 1,
  'train.checkpoint_every': 3,
  'train.eval_every': 3,
  'train.sample_every': NUM_STEPS,
  'eval.max_examples': 32,
}


def _tiny_config(**overrides):
  sys.path.insert(0, processes.REPO)
  from experiments import tiny  # pylint: disable=g-import-not-at-top

  config = tiny.get_config()
  for dotted, value in {**OVERRIDES, **overrides}.items():
    section, field = dotted.split('.')
    config[section][field] = value
  return config


def _flags(**overrides):
  return [f'--config.{k}={v}' for k, v in {**OVERRIDES, **overrides}.items()]


def _losses(workdir):
  records = metrics_writer.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  return [(r['step'], r['train_loss_last']) for r in records if 'train_loss_last' in r]


def _params(config, workdir):
  run = runs.restore_run(workdir, 'latest', config)
  return jax.device_get(run.state.params), run.step


def _check(results, what):
  for i, r in enumerate(results):
    assert r.returncode == 0, f'{what}: process {i} failed:\n{r.output[-4000:]}'


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_two_devices(tmp_path):
  # Reference: one process feeding a mesh of two devices (2 of the test session's 8).
  ref_dir = str(tmp_path / 'one_process')
  ref_config = _tiny_config(**{'train.num_steps': NUM_STEPS, 'mesh.num_devices': 2})
  ref_state, ref_summary = train.train_and_evaluate(ref_config, ref_dir)

  # The same run as two processes of one device each, stopped at step 3 and resumed. Both
  # processes start with an empty data_dir: process 0 prepares it, process 1 waits.
  workdir = str(tmp_path / 'two_processes')
  data_dir = str(tmp_path / 'tfds')
  common = [f'--config={TINY}', f'--workdir={workdir}', f'--config.data.data_dir={data_dir}']
  for num_steps in (3, NUM_STEPS):
    profile = {'train.profile_steps': '(2, 2)'} if num_steps == 3 else {}
    results = processes.run_jax_job(
      'pixel_jax.main',
      common + _flags(**{'train.num_steps': num_steps, **profile}),
      2,
      cwd=str(tmp_path),
    )
    _check(results, f'training to step {num_steps}')
    assert 'Process 1 reads rows 4:8 of every batch of 8.' in results[1].output
    if num_steps == 3:
      first = results
  assert 'Preparing mnist_bundled' in first[0].output
  assert 'Preparing' not in first[1].output
  assert 'Resumed from' in results[0].output and 'Resumed from' in results[1].output

  # The same losses, step by step, and the same parameters.
  ref_losses, losses = _losses(ref_dir), _losses(workdir)
  assert [s for s, _ in losses] == list(range(1, NUM_STEPS + 1))  # Written once, by one.
  np.testing.assert_allclose([x for _, x in losses], [x for _, x in ref_losses], rtol=2e-5)
  one_device = _tiny_config(**{'mesh.num_devices': 1})
  params, step = _params(one_device, workdir)
  assert step == NUM_STEPS
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
    params,
    jax.device_get(ref_state.params),
  )

  # Only process 0 wrote: one TensorBoard file per launch, one sample grid, one config.
  assert len(os.listdir(os.path.join(workdir, 'tensorboard'))) == 2
  assert sorted(os.listdir(os.path.join(workdir, 'samples'))) == ['step_3.png', 'step_6.png']
  assert json.load(open(os.path.join(workdir, 'config.json')))['train']['num_steps'] == 6
  # Each process traced step 2 into a folder of its own.
  assert sorted(os.listdir(os.path.join(workdir, 'profile'))) == ['process_0', 'process_1']

  # pixel_jax.evaluate as a two-process job: the whole split, reported once.
  output = str(tmp_path / 'eval.json')
  results = processes.run_jax_job(
    'pixel_jax.evaluate',
    [
      f'--workdir={workdir}',
      '--split=validation',
      '--checkpoint=latest',
      f'--output={output}',
      '--max_examples=32',
    ],
    2,
    cwd=str(tmp_path),
  )
  _check(results, 'evaluation')
  assert 'validation NLL' in results[0].output and 'validation NLL' not in results[1].output
  result = json.load(open(output))
  assert result['step'] == NUM_STEPS and result['num_examples'] == 32
  assert result['loss'] == pytest.approx(ref_summary['eval_loss'], rel=1e-5)


def test_local_rows_are_the_global_batch_rows():
  """Each process reads only its rows; together they are exactly the global batch,
  dynamic binarization included."""
  config = _tiny_config()
  config.data.binarization = 'dynamic'
  rng = np.random.default_rng(0)
  grey = rng.integers(0, 256, (37, 8, 8, 1), dtype=np.uint8)
  whole = input_pipeline.train_batches(config, grey, seed=3, start_step=5, batch_size=8)
  halves = [
    input_pipeline.train_batches(config, grey, seed=3, start_step=5, batch_size=8, rows=rows)
    for rows in (slice(0, 4), slice(4, 8))
  ]
  for _ in range(6):  # Crosses an epoch boundary (37 images, batches of 8).
    batch = next(whole)
    parts = [next(h) for h in halves]
    assert all(p.shape == (4, 8, 8, 1) for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), batch)


def test_bad_distributed_flags_are_one_line_errors():
  with pytest.raises(distributed.DistributedError, match='--process_id=2'):
    distributed.initialize('auto', '127.0.0.1:1', 2, 2)
  with pytest.raises(distributed.DistributedError, match='contradicts --num_processes'):
    distributed.initialize('off', num_processes=2)
  # No flags and no cluster environment here: 'auto' stays a single process.
  assert distributed.cluster_environment() is None
  assert not distributed.initialize('auto')
