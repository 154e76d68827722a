"""The offline TFDS builders prepare and read real bundled data without TensorFlow."""

import gzip
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from pixel_jax.datasets import base
from pixel_jax.datasets import mnist_bundled
from pixel_jax.datasets import mnist_idx
from pixel_jax.datasets import photos_bundled
from pixel_jax.datasets._package_data import package_file

tfds.disable_progress_bar()


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory) -> str:
  """One prepared copy of the bundled builders for the whole module (about 2 s)."""
  path = str(tmp_path_factory.mktemp('tfds'))
  for name in ('mnist_bundled', 'photos_bundled'):
    builder = tfds.builder(name, data_dir=path, file_format='array_record')
    builder.download_and_prepare(file_format='array_record')
  return path


def _read_all(name: str, split: str, data_dir: str, **builder_kwargs) -> dict[str, np.ndarray]:
  ds = tfds.data_source(
    name,
    split=split,
    data_dir=data_dir,
    builder_kwargs={'file_format': 'array_record', **builder_kwargs},
  )
  examples = [ds[i] for i in range(len(ds))]
  return {key: np.stack([ex[key] for ex in examples]) for key in examples[0]}


def test_mnist_bundled_is_real_mnist(data_dir):
  train = _read_all('mnist_bundled', 'train', data_dir)
  valid = _read_all('mnist_bundled', 'validation', data_dir)
  assert train['image'].shape == (4500, 28, 28, 1) and train['image'].dtype == np.uint8
  assert valid['image'].shape == (500, 28, 28, 1)
  # MNIST statistics: mean intensity about 33/255, about 19% of pixels non-zero.
  assert 30 < train['image'].mean() < 37
  assert 0.15 < (train['image'] > 0).mean() < 0.23
  assert train['image'].max() == 255 and train['image'].min() == 0
  # 500 per class in the file; the shuffled split keeps every class well represented.
  counts = np.bincount(train['label'], minlength=10)
  assert counts.sum() == 4500 and counts.min() > 400
  # Splits are disjoint.
  train_keys = {im.tobytes() for im in train['image']}
  assert not any(im.tobytes() in train_keys for im in valid['image'])


def test_photos_bundled_split_by_photo(data_dir):
  splits = {
    s: _read_all('photos_bundled', s, data_dir)['image'] for s in ('train', 'validation', 'test')
  }
  assert {s: len(x) for s, x in splits.items()} == {'train': 4244, 'validation': 670, 'test': 442}
  for images in splits.values():
    assert images.shape[1:] == (32, 32, 3) and images.dtype == np.uint8
    # Natural photos: mid-range mean, real contrast, every patch has structure.
    assert 40 < images.mean() < 200
    assert images.reshape(len(images), -1).std(axis=1).min() >= 4
  train_keys = {im.tobytes() for im in splits['train']}
  assert not any(im.tobytes() in train_keys for im in splits['test'])


def test_bundled_splits_are_stored_shuffled(data_dir):
  """A prefix of a split (eval.max_examples, `sample --complete`) is a fair sample of it."""
  for split in ('train', 'validation'):
    labels = _read_all('mnist_bundled', split, data_dir)['label']
    # The source file is sorted by class; stored, the first 100 digits hold every class.
    assert len(set(labels[:100].tolist())) == 10
    assert (np.diff(labels) != 0).mean() > 0.8
  # A fixed order, the same wherever it is prepared: the rows of base.shuffled_order.
  images, _ = mnist_bundled.load_mnist_5k()
  np.testing.assert_array_equal(
    _read_all('mnist_bundled', 'validation', data_dir)['image'],
    images[base.shuffled_order(5000)[4500:]],
  )
  # photos_bundled: the test split is chelsea then coffee in the files; stored, mixed.
  test = _read_all('photos_bundled', 'test', data_dir)['image']
  chelsea = photos_bundled.photo_patches(package_file('skimage', 'data/chelsea.png'))
  from_chelsea = np.array([any((im == p).all() for p in chelsea) for im in test])
  assert from_chelsea.sum() == len(chelsea)
  assert 0.2 < from_chelsea[:60].mean() < 0.8


def _write_idx(path: pathlib.Path, array: np.ndarray, magic: int, compress: bool) -> None:
  header = magic.to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in array.shape)
  raw = header + array.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(raw) if compress else raw)


def _write_mnist(folder: pathlib.Path, prefix: str, num: int, seed: int, compress: bool):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, size=(num, 28, 28), dtype=np.uint8)
  labels = rng.integers(0, 10, size=(num,), dtype=np.uint8)
  gz = '.gz' if compress else ''
  _write_idx(folder / f'{prefix}-images-idx3-ubyte{gz}', images, mnist_idx.IMAGE_MAGIC, compress)
  _write_idx(folder / f'{prefix}-labels-idx1-ubyte{gz}', labels, mnist_idx.LABEL_MAGIC, compress)
  return images, labels


def test_mnist_idx_reads_present_splits_in_order(tmp_path):
  idx_dir = tmp_path / 'idx'
  idx_dir.mkdir()
  train_images, train_labels = _write_mnist(idx_dir, 'train', 7, seed=0, compress=True)
  test_images, test_labels = _write_mnist(idx_dir, 't10k', 5, seed=1, compress=False)
  data_dir = str(tmp_path / 'tfds')
  builder = tfds.builder(
    'mnist_idx', data_dir=data_dir, idx_dir=str(idx_dir), file_format='array_record'
  )
  builder.download_and_prepare(file_format='array_record')
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == {'train': 7, 'test': 5}
  train = _read_all('mnist_idx', 'train', data_dir, idx_dir=str(idx_dir))
  test = _read_all('mnist_idx', 'test', data_dir, idx_dir=str(idx_dir))
  np.testing.assert_array_equal(train['image'], train_images[..., None])
  np.testing.assert_array_equal(train['label'], train_labels)
  np.testing.assert_array_equal(test['image'], test_images[..., None])
  np.testing.assert_array_equal(test['label'], test_labels)


def test_mnist_idx_only_test_files_gives_only_test_split(tmp_path):
  _write_mnist(tmp_path, 't10k', 3, seed=2, compress=True)
  assert list(mnist_idx.find_idx_files(tmp_path)) == ['test']


def test_mnist_idx_config_tracks_file_changes(tmp_path):
  _write_mnist(tmp_path, 't10k', 3, seed=2, compress=False)
  before = mnist_idx.idx_config(tmp_path).name
  assert mnist_idx.idx_config(tmp_path).name == before
  _write_mnist(tmp_path, 't10k', 4, seed=3, compress=False)
  assert mnist_idx.idx_config(tmp_path).name != before


def test_mnist_idx_missing_dir_is_one_clear_line(tmp_path):
  missing = tmp_path / 'nowhere'
  with pytest.raises(mnist_idx.IdxError, match='does not exist') as error:
    tfds.builder('mnist_idx', data_dir=str(tmp_path), idx_dir=str(missing))
  assert 'idx_dir' in str(error.value) and '\n' not in str(error.value)
  with pytest.raises(mnist_idx.IdxError, match='no IDX files'):
    mnist_idx.find_idx_files(tmp_path)


def test_mnist_idx_images_without_labels(tmp_path):
  _write_mnist(tmp_path, 't10k', 3, seed=2, compress=False)
  (tmp_path / 't10k-labels-idx1-ubyte').unlink()
  with pytest.raises(mnist_idx.IdxError, match='labels'):
    mnist_idx.find_idx_files(tmp_path)


@pytest.mark.parametrize('damage', ['truncate', 'magic', 'not_gzip', 'count'])
def test_mnist_idx_corrupt_file_is_one_clear_line(tmp_path, damage):
  idx_dir = tmp_path / 'idx'
  idx_dir.mkdir()
  _write_mnist(idx_dir, 't10k', 4, seed=0, compress=True)
  images = idx_dir / 't10k-images-idx3-ubyte.gz'
  raw = gzip.decompress(images.read_bytes())
  if damage == 'truncate':
    images.write_bytes(gzip.compress(raw[:-10]))
  elif damage == 'magic':
    images.write_bytes(gzip.compress(b'\x00\x00\x08\x02' + raw[4:]))
  elif damage == 'not_gzip':
    images.write_bytes(raw)
  else:
    _write_idx(idx_dir / 't10k-labels-idx1-ubyte.gz', np.zeros(3), mnist_idx.LABEL_MAGIC, True)
  builder = tfds.builder(
    'mnist_idx', data_dir=str(tmp_path / 'tfds'), idx_dir=str(idx_dir), file_format='array_record'
  )
  with pytest.raises(mnist_idx.IdxError) as error:
    builder.download_and_prepare(file_format='array_record')
  message = str(error.value)
  assert '\n' not in message and 'idx' in message
  assert not builder.is_prepared()
