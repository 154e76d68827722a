"""TFDS's own mnist, binarized_mnist and cifar10 builders, run offline on generated files.

The files are tiny copies of what each builder downloads (gzipped IDX files, .amat text,
the CIFAR-10 binary tarball: tests/catalog_files.py), served to TFDS's DownloadManager from
a local folder. Preparing runs the builder code TFDS ships and needs TensorFlow (the [tf]
extra); reading and training must not import it. A dataset prepared in TFDS's default
tfrecord format is converted once, then read like the others.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_TRAIN, NUM_TEST = 64, 16  # CIFAR-10: 5 train batches of 13 = 65.


def run_python(code: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=f'{REPO / "src"}{os.pathsep}{REPO / "tests"}')
  return subprocess.run(
    [sys.executable, '-c', textwrap.dedent(code)],
    cwd=str(cwd),
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )


PREPARE = """
import json, pathlib, sys
try:
  import tensorflow  # noqa: F401
except ImportError:
  sys.exit("TFDS's catalog builders need TensorFlow to prepare: pip install -e '.[tf]'")
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist
import catalog_files
from pixel_jax import configs, input_pipeline

tfds.disable_progress_bar()
root = pathlib.Path({root!r})
files = root / 'files'
files.mkdir()
written = {{'mnist': catalog_files.write_mnist(files, {num_train}, {num_test}),
           'binarized_mnist': catalog_files.write_binarized_mnist(files, {num_test}),
           'cifar10': catalog_files.write_cifar10(files, {num_train} // 5 + 1)}}
# TFDS's mnist reads a fixed number of images (60,000 / 10,000); its own tests set these.
mnist._TRAIN_EXAMPLES, mnist._TEST_EXAMPLES = {num_train}, {num_test}
with catalog_files.local_downloads(files):
  for name in written:
    tfds.builder(name, data_dir=str(root / 'tfds')).download_and_prepare(
        file_format='array_record')
  tfds.builder('mnist', data_dir=str(root / 'tfrecord')).download_and_prepare()  # TFDS default.
for name, splits in written.items():
  for split, images in splits.items():
    np.save(root / f'{{name}}_{{split}}.npy', images)
# The tfrecord copy is converted in place by the first open (this needs TensorFlow too).
config = configs.base_config()
config.data.update(name='mnist', data_dir=str(root / 'tfrecord'), allow_fallback=False,
                   offline=True, num_levels=256, binarization='none')
input_pipeline.open(config)
print('PREPARED')
"""

TRAIN = """
import json, pathlib, sys
import numpy as np
from pixel_jax import input_pipeline, train
sys.path.insert(0, {repo!r})
from experiments import tiny
import catalog_files  # noqa: F401  (the same imports as preparing, minus TensorFlow)

root = pathlib.Path({root!r})
cases = {{  # name: (channels, levels, binarization, eval split)
    'mnist': (1, 2, 'static', 'test'), 'binarized_mnist': (1, 2, 'none', 'validation'),
    'cifar10': (3, 256, 'none', 'test')}}
results = {{}}
for name, (channels, levels, binarization, eval_split) in cases.items():
  config = tiny.get_config()
  config.data.update(name=name, data_dir=str(root / 'tfds'), num_channels=channels,
                     num_levels=levels, binarization=binarization, allow_fallback=False,
                     offline=True, eval_split=eval_split, test_split='test')
  config.train.update(num_steps=2, eval_every=0, sample_every=0, checkpoint_every=0)
  config.eval.max_examples = 16
  data = input_pipeline.open(config)
  config.data.image_size = 28 if channels == 1 else 32
  config.data.num_levels, config.data.binarization = 256, 'none'
  stored = input_pipeline.open(config).load('train')  # As stored: for the pixel check.
  expected = np.load(root / f'{{name}}_train.npy')
  same = sorted(map(bytes, stored.reshape(len(stored), -1))) == sorted(
      map(bytes, expected.reshape(len(expected), -1)))
  config.data.image_size, config.data.num_levels = 8, levels
  config.data.binarization = binarization
  _, summary = train.train_and_evaluate(config, str(root / 'runs' / name))
  results[name] = {{'same_pixels': same, 'data': summary['data'],
                   'source': data.info.source, 'fallback': data.info.fallback,
                   'num_examples': data.info.num_examples,
                   'eval_loss': summary['eval_loss'], 'test_loss': summary['test_loss']}}
config.data.update(name='mnist', data_dir=str(root / 'tfrecord'), num_channels=1,
                   num_levels=256, binarization='none', image_size=28)
converted = input_pipeline.open(config).load('train')
results['tfrecord_same'] = sorted(map(bytes, converted.reshape(len(converted), -1))) == sorted(
    map(bytes, np.load(root / 'mnist_train.npy').reshape(len(converted), -1)))
results['tf_modules'] = sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow')
print('RESULTS', json.dumps(results))
"""


@pytest.mark.slow
def test_catalog_builders_prepare_offline_and_train_without_tensorflow(tmp_path):
  prepared = run_python(
    PREPARE.format(root=str(tmp_path), num_train=NUM_TRAIN, num_test=NUM_TEST), tmp_path
  )
  assert prepared.returncode == 0 and 'PREPARED' in prepared.stdout, prepared.stderr[-3000:]
  for name in ('mnist', 'binarized_mnist', 'cifar10'):  # ArrayRecord, as data_source reads.
    assert list((tmp_path / 'tfds' / name).glob('*/*.array_record-*')), name
  assert list((tmp_path / 'tfrecord' / 'mnist').glob('*/*.tfrecord-*'))

  trained = run_python(TRAIN.format(root=str(tmp_path), repo=str(REPO)), tmp_path)
  assert trained.returncode == 0, trained.stderr[-3000:]
  line = next(out for out in trained.stdout.splitlines() if out.startswith('RESULTS '))
  results = json.loads(line[len('RESULTS ') :])
  assert results.pop('tf_modules') == [], 'reading or training imported TensorFlow'
  assert results.pop('tfrecord_same')
  expected_counts = {
    'mnist': {'train': NUM_TRAIN, 'test': NUM_TEST},
    'binarized_mnist': {'train': NUM_TEST, 'validation': NUM_TEST, 'test': NUM_TEST},
    'cifar10': {'train': 65, 'test': 13},
  }
  for name, result in results.items():
    assert result['source'] == name and not result['fallback'], result
    assert result['data'].startswith(name), result
    assert result['same_pixels'], name
    for split, count in expected_counts[name].items():
      assert result['num_examples'][split] == count, (name, result['num_examples'])
    assert np.isfinite(result['eval_loss']) and np.isfinite(result['test_loss']), result
