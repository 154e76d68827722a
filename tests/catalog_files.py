"""Tiny files in the upstream formats TFDS's own mnist, binarized_mnist and cifar10 download.

`local_downloads(folder)` makes TFDS's DownloadManager fetch every URL from `folder` (the
file named like the URL's last part) instead of the network; extraction stays TFDS's own.
So `tfds.builder(name).download_and_prepare()` runs the builder code TFDS ships, offline.
"""

import contextlib
import gzip
import io
import pathlib
import tarfile
import urllib.parse

import numpy as np
import tensorflow_datasets as tfds

CIFAR10_LABELS = (
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
)


def _idx(array: np.ndarray, magic: int) -> bytes:
  header = magic.to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in array.shape)
  return gzip.compress(header + array.astype(np.uint8).tobytes())


def write_mnist(folder: pathlib.Path, num_train: int, num_test: int, seed: int = 0) -> dict:
  """The four gzipped IDX files of yann.lecun.com/exdb/mnist; returns the images per split."""
  rng = np.random.default_rng(seed)
  images = {}
  for prefix, split, num in (('train', 'train', num_train), ('t10k', 'test', num_test)):
    images[split] = rng.integers(0, 256, size=(num, 28, 28), dtype=np.uint8)
    (folder / f'{prefix}-images-idx3-ubyte.gz').write_bytes(_idx(images[split], 0x803))
    (folder / f'{prefix}-labels-idx1-ubyte.gz').write_bytes(
      _idx(rng.integers(0, 10, size=num), 0x801)
    )
  return images


def write_binarized_mnist(folder: pathlib.Path, num: int, seed: int = 1) -> dict:
  """binarized_mnist_{train,valid,test}.amat: one image a line, 784 '0'/'1' with spaces."""
  rng = np.random.default_rng(seed)
  images = {}
  for split, part in (('train', 'train'), ('validation', 'valid'), ('test', 'test')):
    images[split] = rng.integers(0, 2, size=(num, 28, 28), dtype=np.uint8)
    lines = [' '.join(map(str, image.ravel())) for image in images[split]]
    (folder / f'binarized_mnist_{part}.amat').write_text('\n'.join(lines) + '\n')
  return images


def write_cifar10(folder: pathlib.Path, num_per_batch: int, seed: int = 2) -> dict:
  """cifar-10-binary.tar.gz: cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin (a label
  byte, then 3072 channel-first pixels, per image) and batches.meta.txt."""
  rng = np.random.default_rng(seed)
  images = {'train': [], 'test': []}
  members = {'batches.meta.txt': ('\n'.join(CIFAR10_LABELS) + '\n').encode()}
  for name, split in [(f'data_batch_{i}', 'train') for i in range(1, 6)] + [('test_batch', 'test')]:
    batch = rng.integers(0, 256, size=(num_per_batch, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(num_per_batch, 1), dtype=np.uint8)
    rows = np.concatenate([labels, batch.transpose(0, 3, 1, 2).reshape(num_per_batch, -1)], 1)
    members[f'{name}.bin'] = rows.tobytes()
    images[split].append(batch)
  with tarfile.open(folder / 'cifar-10-binary.tar.gz', 'w:gz') as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(f'cifar-10-batches-bin/{name}')
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return {split: np.concatenate(parts) for split, parts in images.items()}


@contextlib.contextmanager
def local_downloads(folder: pathlib.Path):
  """TFDS downloads read `folder`: each URL maps to the file named like its last part."""
  manager = tfds.download.DownloadManager
  real = {name: getattr(manager, name) for name in ('download', 'download_and_extract')}

  def local_path(url):
    path = folder / pathlib.PurePosixPath(urllib.parse.urlparse(str(url)).path).name
    if not path.is_file():
      raise FileNotFoundError(f'No local file for {url}: expected {path}.')
    return path

  def download(self, url_or_urls):
    del self
    return tfds.core.utils.map_nested(local_path, url_or_urls)

  def download_and_extract(self, url_or_urls):
    return self.extract(download(self, url_or_urls))

  manager.download = download
  manager.download_and_extract = download_and_extract
  try:
    yield
  finally:
    for name, method in real.items():
      setattr(manager, name, method)
