"""Converts a dataset TFDS prepared as tfrecord (its default) to array_record, in place.

`tfds build NAME` writes tfrecord unless given `--file_format=array_record`, and tfrecord
has no random access, so tfds.data_source cannot read it. TFDS's own command for this,
`tfds convert_format --dataset_version_dir=DIR --out_file_format=array_record`, converts it
but its module also needs Apache Beam. `convert_to_array_record` does the same in-place
conversion of one prepared dataset version with TFDS's file adapters: each tfrecord shard is
copied record for record (both formats hold the same serialized examples) into the
array_record shard of the same name beside it, and dataset_info.json then names array_record
as the dataset's file format, tfrecord as an alternative. (TFDS's converter records an
in-place conversion the other way round, but a builder restored from its directory ignores
the alternatives, so tfds.data_source would still refuse it.) Reading tfrecord needs
TensorFlow, this once; tfds.data_source then reads the array_record copy without it.
"""

import os

from etils import epath
from tensorflow_datasets.core import dataset_info as dataset_info_lib
from tensorflow_datasets.core import file_adapters
from tensorflow_datasets.core.utils import py_utils

TFRECORD = file_adapters.FileFormat.TFRECORD.value
ARRAY_RECORD = file_adapters.FileFormat.ARRAY_RECORD.value


class ConversionUnavailableError(RuntimeError):
  """TensorFlow, needed once to read tfrecord, is not installed; the message says what to do."""


def tfds_command(dataset_version_dir: os.PathLike | str) -> str:
  """TFDS's own command for the same conversion (it needs TensorFlow and Apache Beam)."""
  return (
    f'tfds convert_format --dataset_version_dir={dataset_version_dir} '
    f'--out_file_format={ARRAY_RECORD}'
  )


def is_tfrecord_only(dataset_version_dir: os.PathLike | str) -> bool:
  """Whether a prepared dataset version is stored as tfrecord (not yet converted)."""
  path = epath.Path(dataset_version_dir) / 'dataset_info.json'
  if not path.exists():
    return False
  return (dataset_info_lib.read_from_json(path).file_format or TFRECORD) == TFRECORD


def convert_to_array_record(dataset_version_dir: os.PathLike | str) -> int:
  """Writes an array_record copy beside every tfrecord shard; returns how many it wrote.

  Shards already converted are kept, so an interrupted conversion resumes. Each shard is
  written under a temporary name and renamed when complete.

  Raises:
    ConversionUnavailableError: TensorFlow is not installed.
  """
  version_dir = epath.Path(dataset_version_dir)
  try:
    import tensorflow  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import,import-outside-toplevel
  except ImportError:
    raise ConversionUnavailableError(
      f'The dataset in {version_dir} is stored as {TFRECORD}, which only TensorFlow reads; '
      "convert it once to array_record: pip install 'pixel_jax[tf]' (tensorflow-cpu) and "
      f'rerun, which converts it in place (or run `{tfds_command(version_dir)}`, which '
      'also needs apache-beam).'
    ) from None
  written = 0
  for shard in sorted(version_dir.glob(f'*.{TFRECORD}-*-of-*')):
    out = shard.parent / shard.name.replace(f'.{TFRECORD}-', f'.{ARRAY_RECORD}-')
    if out.exists():
      continue
    records = file_adapters.TfRecordFileAdapter.make_tf_data(shard)
    with py_utils.incomplete_file(out) as tmp:
      file_adapters.ArrayRecordFileAdapter.write_examples(
        tmp, ((i, record.numpy()) for i, record in enumerate(records))
      )
    written += 1
  info = dataset_info_lib.read_from_json(version_dir / 'dataset_info.json')
  if info.file_format != ARRAY_RECORD:
    alternatives = [f for f in info.alternative_file_formats if f != ARRAY_RECORD]
    del info.alternative_file_formats[:]
    info.alternative_file_formats.extend(alternatives + [info.file_format or TFRECORD])
    info.file_format = ARRAY_RECORD
    dataset_info_lib.write_dataset_info_proto(info, dataset_info_dir=version_dir)
  return written
