"""A gs:// workdir end to end against a local GCS emulator: train, resume, evaluate, sample
and score.

config.json, metrics.jsonl, sample grids, TensorBoard events, the profile and the orbax
checkpoints all land in the bucket, and nothing in the local directory the tools ran from.
The images that sample completes and score scores (a .npy file, a folder of PNGs) are read
from the bucket too.
"""

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gcs_emulator  # pylint: disable=g-import-not-at-top,wrong-import-position
import processes  # pylint: disable=g-import-not-at-top,wrong-import-position

TINY = os.path.join(processes.REPO, 'experiments', 'tiny.py')


def _run(module, args, env, cwd):
  [result] = processes.run_all([[sys.executable, '-m', module, *args]], [env], cwd, timeout_s=300)
  assert result.returncode == 0, f'{module} {args}:\n{result.output[-4000:]}'
  return result.output


def _npy_bytes(array):
  data = io.BytesIO()
  np.save(data, array)
  return data.getvalue()


def _png_bytes(array):
  data = io.BytesIO()
  Image.fromarray(array).save(data, format='PNG')
  return data.getvalue()


# Bad inputs in the bucket, read as the tools read them: one line each, naming the path.
_BAD_INPUTS = """
import ml_collections
from pixel_jax import image_files
config = ml_collections.ConfigDict({'data': {'image_size': 8, 'num_channels': 1, 'num_levels': 2}})
for source in ('gs://bucket/inputs/missing.npy', 'gs://bucket/inputs/notes'):
  try:
    image_files.load_images(source, config)
  except image_files.ImageFileError as e:
    print(e)
"""


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
    bits = np.random.default_rng(0).integers(0, 2, (3, 8, 8)).astype(np.uint8)
    gcs.write('inputs/images.npy', _npy_bytes(bits))
    for i in range(2):
      gcs.write(f'inputs/pngs/img{i}.png', _png_bytes(bits[i] * 255))
    gcs.write('inputs/notes/readme.txt', b'no images here')
    output = _run(
      'pixel_jax.sample',
      [
        f'--workdir={workdir}',
        '--num_samples=2',
        f'--complete=gs://{gcs.bucket}/inputs/images.npy',
        '--keep_rows=4',
      ],
      env,
      cwd,
    )
    assert f'{workdir}/sampled/samples.png' in output
    assert f'{workdir}/sampled/completion.png' in output
    output = _run(
      'pixel_jax.score',
      [f'--workdir={workdir}', f'--images=gs://{gcs.bucket}/inputs/pngs/'],
      env,
      cwd,
    )
    assert f'2 images of gs://{gcs.bucket}/inputs/pngs/' in output
    bad = subprocess.run(
      [sys.executable, '-c', _BAD_INPUTS],
      env=env,
      cwd=cwd,
      capture_output=True,
      text=True,
      timeout=120,
      check=True,
    )
    assert bad.stdout.splitlines() == [
      f'gs://{gcs.bucket}/inputs/missing.npy does not exist; give a folder of PNG files or a '
      '.npy file.',
      f'gs://{gcs.bucket}/inputs/notes holds no .png files.',
    ], bad.stdout + bad.stderr[-2000:]

    names = gcs.list('run/')
    for name in (
      'config.json',
      'metrics.jsonl',
      'eval.json',
      'samples/step_4.png',
      'sampled/samples.png',
      'sampled/samples.npy',
      'sampled/completion.png',
      'scores/scores.csv',
      'scores/scores.jsonl',
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
    # The completions started from the first two images of the bucket's .npy (its top rows
    # kept), and every image of the bucket's PNG folder was scored.
    originals = np.load(io.BytesIO(gcs.read('run/sampled/originals.npy')))
    np.testing.assert_array_equal(originals, bits[:2, ..., None])
    completions = np.load(io.BytesIO(gcs.read('run/sampled/completion.npy')))
    np.testing.assert_array_equal(completions[:, :4], originals[:, :4])
    table = list(csv.DictReader(io.StringIO(gcs.read('run/scores/scores.csv').decode())))
    assert [row['image'] for row in table] == ['img0.png', 'img1.png']
    assert all(float(row['nll_nats']) > 0 for row in table)
    scores = [json.loads(line) for line in gcs.read('run/scores/scores.jsonl').splitlines()]
    assert [row['image'] for row in scores] == ['img0.png', 'img1.png']
  assert not (cwd / 'gs:').exists()  # No local ./gs:/bucket/run.
