"""A gs:// workdir end to end against a local GCS emulator: train, resume, evaluate, sample.

config.json, metrics.jsonl, sample grids, TensorBoard events, the profile and the orbax
checkpoints all land in the bucket, and nothing in the local directory the tools ran from.
"""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcs_emulator  # pylint: disable=g-import-not-at-top,wrong-import-position
import processes  # pylint: disable=g-import-not-at-top,wrong-import-position

TINY = os.path.join(processes.REPO, 'experiments', 'tiny.py')


def _run(module, args, env, cwd):
  [result] = processes.run_all([[sys.executable, '-m', module, *args]], [env], cwd, timeout_s=300)
  assert result.returncode == 0, f'{module} {args}:\n{result.output[-4000:]}'
  return result.output


@pytest.mark.slow
def test_train_resume_evaluate_sample_in_a_gcs_bucket(tmp_path):
  cwd = tmp_path / 'cwd'
  cwd.mkdir()
  with gcs_emulator.GcsEmulator() as gcs:
    env = processes.python_env(JAX_PLATFORMS='cpu', **gcs_emulator.client_env(gcs.url))
    workdir = f'gs://{gcs.bucket}/run'
    common = [
      f'--config={TINY}',
      f'--workdir={workdir}',
      '--config.train.log_every=2',
      '--config.train.checkpoint_every=2',
      '--config.train.eval_every=2',
      '--config.train.sample_every=4',
      '--config.eval.max_examples=16',
    ]
    _run(
      'pixel_jax.main',
      common + ['--config.train.num_steps=4', '--config.train.profile_steps=(3, 3)'],
      env,
      cwd,
    )
    output = _run('pixel_jax.main', common + ['--config.train.num_steps=6'], env, cwd)
    assert 'Resumed from' in output and 'Done: 6 steps (from 4)' in output
    output = _run(
      'pixel_jax.evaluate',
      [f'--workdir={workdir}', '--split=validation', f'--output={workdir}/eval.json'],
      env,
      cwd,
    )
    assert 'validation NLL' in output
    output = _run('pixel_jax.sample', [f'--workdir={workdir}', '--num_samples=2'], env, cwd)
    assert f'{workdir}/sampled/samples.png' in output

    names = gcs.list('run/')
    for name in (
      'config.json',
      'metrics.jsonl',
      'eval.json',
      'samples/step_4.png',
      'sampled/samples.png',
      'sampled/samples.npy',
    ):
      assert f'run/{name}' in names, (name, names)
    for folder in (
      'checkpoints/6/',
      'checkpoints_best/',
      'tensorboard/events.out.tfevents',
      'profile/plugins/profile/',
    ):
      assert any(n.startswith(f'run/{folder}') for n in names), (folder, names)
    records = [json.loads(line) for line in gcs.read('run/metrics.jsonl').splitlines()]
    assert [r['step'] for r in records if 'train_loss' in r] == [2, 4, 6]  # Once each.
    assert json.loads(gcs.read('run/eval.json'))['step'] in (2, 4, 6)
    assert json.loads(gcs.read('run/config.json'))['train']['num_steps'] == 6
  assert not (cwd / 'gs:').exists()  # No local ./gs:/bucket/run.
