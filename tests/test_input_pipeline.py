"""open / Dataset.load / train_batches / eval_batches, all offline and without TF."""

import gzip
import logging
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds

from pixel_jax import configs
from pixel_jax import input_pipeline
from pixel_jax.datasets import mnist_idx
from pixel_jax.datasets import sources

tfds.disable_progress_bar()


@pytest.fixture(scope='module')
def shared_data_dir(tmp_path_factory) -> str:
  """A TFDS data_dir shared by this module, so the bundled builders are prepared once."""
  return str(tmp_path_factory.mktemp('tfds'))


_REAL_NETWORK_REACHABLE = sources.network_reachable


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
  """Never download in tests, even on a machine that has network access."""
  monkeypatch.setattr(sources, 'network_reachable', lambda *a, **k: False)


def _config(data_dir: str, **data):
  config = configs.base_config()
  config.data.data_dir = data_dir
  config.data.update(data)
  return config


def _load(config, split):
  return input_pipeline.open(config).load(split)


def _info(config):
  return input_pipeline.open(config).info


def _write_idx(path: pathlib.Path, array: np.ndarray, magic: int) -> None:
  header = magic.to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in array.shape)
  path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def _write_t10k(folder: pathlib.Path, num: int) -> np.ndarray:
  images = np.random.default_rng(0).integers(0, 256, size=(num, 28, 28), dtype=np.uint8)
  _write_idx(folder / 't10k-images-idx3-ubyte.gz', images, mnist_idx.IMAGE_MAGIC)
  _write_idx(folder / 't10k-labels-idx1-ubyte.gz', np.arange(num) % 10, mnist_idx.LABEL_MAGIC)
  return images[..., None]


# -------------------------------------------------------------------------------- load


def test_static_binarization_is_deterministic_and_named(shared_data_dir):
  config = _config(shared_data_dir, binarization='static', binarization_seed=3)
  first = _load(config, 'train')
  again = _load(config, 'train')
  np.testing.assert_array_equal(first, again)
  assert first.shape == (4500, 28, 28, 1) and first.dtype == np.uint8
  assert set(np.unique(first)) == {0, 1}
  grey = _load(_config(shared_data_dir, num_levels=256), 'train')
  # Bernoulli(x / 255): the mean matches the grey mean; black stays 0, white stays 1.
  assert abs(first.mean() - grey.mean() / 255) < 0.003
  assert not first[grey == 0].any() and first[grey == 255].all()
  other_seed = _load(_config(shared_data_dir, binarization_seed=4), 'train')
  assert (other_seed != first).mean() > 0.01
  info = _info(config)
  assert info.binarization.startswith('static') and 'seed 3' in info.binarization
  assert info.num_examples == {'train': 4500, 'validation': 500}
  assert not info.fallback


def test_bernoulli_binarize_is_exact():
  levels = np.arange(256, dtype=np.uint8)[None].repeat(20000, axis=0)
  bits = input_pipeline.bernoulli_binarize(levels, np.random.default_rng(0))
  np.testing.assert_allclose(bits.mean(axis=0), np.arange(256) / 255, atol=0.015)
  assert bits[:, 0].sum() == 0 and bits[:, 255].all()


def test_threshold_and_none(shared_data_dir):
  grey = _load(_config(shared_data_dir, num_levels=256), 'validation')
  threshold = _config(shared_data_dir, binarization='threshold')
  np.testing.assert_array_equal(_load(threshold, 'validation'), (grey > 127).astype(np.uint8))
  assert 'NOT comparable' in _info(threshold).binarization
  with pytest.raises(ValueError, match='binarization'):
    _load(_config(shared_data_dir, binarization='none'), 'validation')


def test_shape_checks_name_the_field(shared_data_dir):
  with pytest.raises(ValueError, match='config.data.num_channels'):
    _load(_config(shared_data_dir, num_channels=3), 'validation')
  with pytest.raises(ValueError, match='config.data.image_size'):
    _load(_config(shared_data_dir, image_size=32), 'validation')
  with pytest.raises(ValueError, match="'test' split"):
    _load(_config(shared_data_dir), 'test')
  grey = _load(_config(shared_data_dir, num_levels=256), 'validation')
  small = _load(_config(shared_data_dir, num_levels=256, image_size=14), 'validation')
  assert small.shape == (500, 14, 14, 1)
  np.testing.assert_allclose(small.mean(), grey.mean(), atol=0.5)


def test_photos_256_levels(shared_data_dir):
  config = _config(
    shared_data_dir,
    name='photos_bundled',
    num_levels=256,
    image_size=32,
    num_channels=3,
    binarization='none',
  )
  test = _load(config, 'test')
  assert test.shape == (442, 32, 32, 3) and test.dtype == np.uint8 and test.max() > 200
  info = _info(config)
  assert info.num_examples == {'train': 4244, 'validation': 670, 'test': 442}
  assert info.binarization == 'none (256 levels)'


def test_mnist_idx_through_open(tmp_path):
  _write_t10k(tmp_path, 13)
  config = _config(str(tmp_path / 'tfds'), name='mnist_idx', idx_dir=str(tmp_path), num_levels=256)
  images = _load(config, 'test')
  np.testing.assert_array_equal(images, _write_t10k(tmp_path, 13))
  config.data.idx_dir = ''
  with pytest.raises(ValueError, match='idx_dir'):
    _load(config, 'test')


# ---------------------------------------------------------------------- catalog datasets


def test_catalog_mnist_falls_back_loudly_and_resolves_once(
  tmp_path, shared_data_dir, caplog, monkeypatch
):
  probes = []
  monkeypatch.setattr(sources, 'network_reachable', lambda *a, **k: probes.append(1) or False)
  config = _config(str(tmp_path / 'empty'), name='mnist', allow_fallback=True)
  with caplog.at_level(logging.WARNING):
    data = input_pipeline.open(config)
    images = data.load('train')
    data.load('validation')
    data.load('train')
  # One resolution per run: one network probe, one warning, however many splits are read.
  assert len(probes) == 1
  assert caplog.text.count('DATA FALLBACK') == 1 and 'mnist_bundled' in caplog.text
  np.testing.assert_array_equal(images, _load(_config(shared_data_dir), 'train'))
  info = data.info
  assert info.fallback and info.source == 'mnist_bundled' and info.name == 'mnist'
  assert 'no network' in info.fallback_reason
  assert data.describe('train') == 'mnist_bundled, standing in for mnist'


def test_fallback_reads_real_test_set_from_idx_dir(tmp_path):
  expected = _write_t10k(tmp_path, 11)
  config = _config(
    str(tmp_path / 'tfds'),
    name='binarized_mnist',
    binarization='none',
    num_levels=2,
    idx_dir=str(tmp_path),
  )
  data = input_pipeline.open(config)
  test = data.load('test')
  assert test.shape == (11, 28, 28, 1) and set(np.unique(test)) <= {0, 1}
  # binarized_mnist is a fixed stochastic binarization: its stand-in is 'static'.
  assert data.info.binarization.startswith('static')
  assert data.info.num_examples['test'] == 11
  assert abs(test.mean() - expected.mean() / 255) < 0.02
  # What each split really reads, named (pixel_jax.evaluate reports this).
  assert data.describe('test') == (
    f'mnist_idx (idx_dir={tmp_path}), standing in for binarized_mnist'
  )
  assert data.describe('validation') == 'mnist_bundled, standing in for binarized_mnist'


def test_labels_of_bundled_digits_idx_files_and_catalog(tmp_path, shared_data_dir):
  """Class labels, in the images' order: the bundled digits, IDX label files (the fallback's
  test split) and a TFDS catalog dataset's label feature."""
  _write_t10k(tmp_path, 12)
  config = _config(shared_data_dir, name='mnist', idx_dir=str(tmp_path))
  data = input_pipeline.open(config)
  train = data.load_labels('train')
  assert train.dtype == np.int32 and len(train) == len(data.load('train')) == 4500
  assert np.bincount(train).min() > 400 and set(train) == set(range(10))
  np.testing.assert_array_equal(data.load_labels('test'), np.arange(12) % 10)
  # A catalog dataset (mock data standing in for CIFAR-10): the 'label' feature.
  rng = np.random.default_rng(0)
  examples = [
    {'image': rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), 'label': i % 7} for i in range(20)
  ]

  class Source:
    def __init__(self, rows):
      self.rows = rows

    def __len__(self):
      return len(self.rows)

    def __getitem__(self, k):
      return self.rows[k]

    def __getitems__(self, keys):
      return [self.rows[k] for k in keys]

  colour = _config(
    str(tmp_path / 'tfds'),
    name='cifar10',
    image_size=8,
    num_channels=3,
    num_levels=256,
    binarization='none',
    allow_fallback=False,
  )
  with tfds.testing.mock_data(as_data_source_fn=lambda *a, **k: Source(examples)):
    np.testing.assert_array_equal(
      input_pipeline.open(colour).load_labels('train'), np.arange(20) % 7
    )
  # Images without labels: one line naming the field to change.
  unlabelled = Source([{'image': e['image']} for e in examples])
  with tfds.testing.mock_data(as_data_source_fn=lambda *a, **k: unlabelled):
    with pytest.raises(ValueError, match='has no labels.*num_classes=0'):
      input_pipeline.open(colour).load_labels('train')


def test_train_batches_carry_their_images_labels():
  """Each label travels with its image, across epochs, resumption and row slices."""
  config = configs.base_config()
  index_images = np.arange(10).reshape(10, 1, 1, 1)  # Image k "is" k: found by its value.
  labels = (np.arange(10) * 3 % 10).astype(np.int32)
  config.data.num_levels = 256
  stream = input_pipeline.train_batches(
    config, index_images.astype(np.uint8), seed=2, batch_size=4, labels=labels
  )
  for _ in range(7):
    batch, batch_labels = next(stream)
    np.testing.assert_array_equal(batch_labels, labels[batch[:, 0, 0, 0]])
  rows = input_pipeline.train_batches(
    config,
    index_images.astype(np.uint8),
    seed=2,
    batch_size=4,
    labels=labels,
    rows=slice(2, 4),
    start_step=3,
  )
  batch, batch_labels = next(rows)
  assert batch.shape[0] == 2
  np.testing.assert_array_equal(batch_labels, labels[batch[:, 0, 0, 0]])
  with pytest.raises(ValueError, match='one per image'):
    next(
      input_pipeline.train_batches(
        config, index_images.astype(np.uint8), seed=0, batch_size=2, labels=labels[:3]
      )
    )


def test_offline_never_probes_the_network(tmp_path, monkeypatch):
  probes = []
  monkeypatch.setattr(sources, 'network_reachable', lambda *a, **k: probes.append(1) or True)
  config = _config(str(tmp_path), name='mnist', allow_fallback=False, offline=True)
  with pytest.raises(input_pipeline.DatasetUnavailableError, match='offline=True'):
    input_pipeline.open(config)
  config.data.allow_fallback = True
  data = input_pipeline.open(config)
  assert data.info.source == 'mnist_bundled' and 'offline=True' in data.info.fallback_reason
  assert not probes


@pytest.fixture
def no_proxy_variables(monkeypatch):
  for name in ('https_proxy', 'all_proxy', 'no_proxy'):
    monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(name.upper(), raising=False)
  return monkeypatch


def test_network_probe_goes_through_the_proxy(no_proxy_variables):
  monkeypatch = no_proxy_variables
  assert sources.probe_address() == sources.DOWNLOAD_HOST
  with socket.create_server(('127.0.0.1', 0)) as proxy:
    port = proxy.getsockname()[1]
    monkeypatch.setenv('HTTPS_PROXY', f'http://127.0.0.1:{port}')
    assert sources.probe_address() == ('127.0.0.1', port)
    assert _REAL_NETWORK_REACHABLE(timeout_s=1.0)  # The local proxy answers.
  assert not _REAL_NETWORK_REACHABLE(timeout_s=1.0)  # Closed: no network.
  monkeypatch.setenv('NO_PROXY', 'localhost,.googleapis.com')
  assert sources.probe_address() == sources.DOWNLOAD_HOST
  monkeypatch.delenv('HTTPS_PROXY')
  monkeypatch.delenv('NO_PROXY')
  monkeypatch.setenv('ALL_PROXY', 'socks5://proxy.example')
  assert sources.probe_address() == ('proxy.example', 1080)


def test_catalog_without_fallback_raises_with_instructions(tmp_path):
  config = _config(str(tmp_path), name='mnist', allow_fallback=False)
  with pytest.raises(input_pipeline.DatasetUnavailableError, match='tfds build mnist'):
    _load(config, 'train')
  # Fallback only ever applies to MNIST.
  config = _config(
    str(tmp_path),
    name='cifar10',
    allow_fallback=True,
    num_levels=256,
    image_size=32,
    num_channels=3,
  )
  with pytest.raises(input_pipeline.DatasetUnavailableError, match='array_record'):
    _load(config, 'train')


def test_unknown_name(tmp_path):
  with pytest.raises(ValueError, match='config.data.name'):
    _load(_config(str(tmp_path), name='no_such_dataset_xyz'), 'train')


def test_catalog_cifar10_with_mock_data(tmp_path):
  config = _config(
    str(tmp_path),
    name='cifar10',
    num_levels=256,
    image_size=32,
    num_channels=3,
    binarization='none',
    allow_fallback=False,
  )
  with tfds.testing.mock_data(num_examples=21):
    images = _load(config, 'train')
    small = _load(
      _config(str(tmp_path), name='cifar10', num_levels=256, image_size=16, num_channels=3), 'test'
    )
  assert images.shape == (21, 32, 32, 3) and images.dtype == np.uint8
  assert images.max() > 1
  assert small.shape == (21, 16, 16, 3)


# ------------------------------------------------------------------------------- batches


def test_train_batches_resume_exactly():
  config = configs.base_config()
  images = np.random.default_rng(0).integers(0, 2, size=(37, 4, 4, 1), dtype=np.uint8)
  stream = input_pipeline.train_batches(config, images, seed=5, batch_size=8)
  first = [next(stream) for _ in range(12)]
  resumed = input_pipeline.train_batches(config, images, seed=5, start_step=7, batch_size=8)
  for k in range(7, 12):
    np.testing.assert_array_equal(next(resumed), first[k])
  other = input_pipeline.train_batches(config, images, seed=6, batch_size=8)
  assert any((next(other) != b).any() for b in first[:3])


def test_train_batches_visit_every_image_once_per_epoch():
  config = configs.base_config()
  config.data.num_levels = 256
  images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
  stream = input_pipeline.train_batches(config, images, seed=0, batch_size=3)
  seen = np.concatenate([next(stream) for _ in range(10)]).ravel()  # 30 = 3 epochs.
  for epoch in range(3):
    assert sorted(seen[10 * epoch : 10 * (epoch + 1)]) == list(range(10))
  assert list(seen[:10]) != list(seen[10:20])  # A fresh permutation each epoch.


def test_dynamic_binarization_per_step(shared_data_dir):
  config = _config(shared_data_dir, binarization='dynamic')
  grey = _load(config, 'validation')
  assert grey.max() == 255  # Left grey for train_batches.
  a = input_pipeline.train_batches(config, grey, seed=1, batch_size=500)
  b = input_pipeline.train_batches(config, grey, seed=1, start_step=1, batch_size=500)
  step0, step1 = next(a), next(a)
  np.testing.assert_array_equal(next(b), step1)
  assert set(np.unique(step0)) == {0, 1}
  # Same images (full-epoch batches), different binarization noise.
  assert (np.sort(step0.reshape(500, -1).sum(1)) != np.sort(step1.reshape(500, -1).sum(1))).any()
  assert abs(step0.mean() - grey.mean() / 255) < 0.01


def test_train_batches_reject_unbinarized_levels():
  config = configs.base_config()
  images = np.full((4, 2, 2, 1), 200, dtype=np.uint8)
  with pytest.raises(ValueError, match='num_levels'):
    next(input_pipeline.train_batches(config, images, seed=0, batch_size=2))


def test_eval_batches_cover_each_example_once():
  images = np.arange(23, dtype=np.uint8).reshape(23, 1, 1, 1) + 1
  batches = list(input_pipeline.eval_batches(images, 5))
  assert len(batches) == 5
  assert all(b.shape == (5, 1, 1, 1) and m.shape == (5,) and m.dtype == bool for b, m in batches)
  valid = np.concatenate([b[m] for b, m in batches])
  np.testing.assert_array_equal(valid, images)
  assert sum(m.sum() for _, m in batches) == 23
  assert (batches[-1][0][~batches[-1][1]] == 0).all()


# ------------------------------------------------------------------------- no TensorFlow


@pytest.mark.slow
def test_offline_path_never_imports_tensorflow(tmp_path):
  """In a fresh interpreter, so no other test can have imported (or hidden) TensorFlow."""
  script = textwrap.dedent(f"""
      import sys
      import tensorflow_datasets as tfds
      from pixel_jax import configs, input_pipeline
      tfds.disable_progress_bar()
      config = configs.base_config()
      config.data.data_dir = {str(tmp_path)!r}
      config.data.name = 'mnist'  # Catalog name -> fallback to the bundled digits.
      config.data.offline = True
      data = input_pipeline.open(config)
      images = data.load('train')
      batch = next(input_pipeline.train_batches(config, images, seed=0, batch_size=4))
      assert images.shape == (4500, 28, 28, 1) and data.info.fallback, data.info
      assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'
      print('OK')
  """)
  result = subprocess.run(
    [sys.executable, '-c', script], capture_output=True, text=True, timeout=120, check=False
  )
  assert result.returncode == 0 and 'OK' in result.stdout, result.stderr[-3000:]
