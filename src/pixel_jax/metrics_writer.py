"""Metrics to metrics.jsonl (one JSON object per line) and TensorBoard event files.

Only process 0 writes; the others get a writer that does nothing, so callers need no
`if jax.process_index() == 0` of their own.
"""

import contextlib
import io
import json
import math
import os
import sys
import time
from typing import Any, IO, Mapping, Optional

from absl import logging
import numpy as np

from pixel_jax import storage

METRICS_FILE = 'metrics.jsonl'


@contextlib.contextmanager
def _torch_hidden():
  """Imports of tensorboardX inside this block do not import PyTorch.

  tensorboardX's package imports torch whenever it is installed (to accept torch tensors,
  which this module never passes), and importing torch costs several seconds at every
  start of a run, e.g. in Colab, where it is preinstalled. While torch is not imported yet,
  the block marks it as missing (an `import torch` raises ImportError, which tensorboardX
  handles) and then forgets the mark, so a later `import torch` of the user works.
  """
  if 'torch' in sys.modules:
    yield
    return
  sys.modules['torch'] = None  # type: ignore[assignment]
  try:
    yield
  finally:
    if sys.modules.get('torch', 0) is None:
      del sys.modules['torch']


def _plain(value: Any) -> Any:
  """numpy/jax scalars -> Python numbers; non-finite floats -> strings (valid JSON)."""
  if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0:
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


def read_jsonl(path: str) -> list[dict]:
  """All readable records of a metrics.jsonl; damaged lines (a killed writer's unfinished
  last line, a line edited by hand) are skipped."""
  return _read_records(path)[0]


def _read_records(path: str) -> tuple[list[dict], list[tuple[int, str]]]:
  """(records, [(line number, text) of each damaged line])."""
  records: list[dict] = []
  damaged: list[tuple[int, str]] = []
  file = storage.path(path)
  if not file.exists():
    return records, damaged
  text = io.StringIO(file.read_bytes().decode(errors='replace'), newline=None)
  for number, line in enumerate(text, 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      record = None
    if isinstance(record, dict) and isinstance(record.get('step'), int):
      records.append(record)
    else:
      damaged.append((number, line))
  return records, damaged


def history(workdir: str, up_to_step: int) -> list[dict]:
  """The readable records of workdir/metrics.jsonl with step <= up_to_step: what a run
  resumed at that step has already written (every process reads it, to agree on what is
  left to do)."""
  return [r for r in read_jsonl(os.path.join(workdir, METRICS_FILE)) if r['step'] <= up_to_step]


class _EventFile:
  """A TensorBoard event file written synchronously: each event is on disk (flushed) when
  write() returns, so a killed run loses none that its metrics.jsonl holds."""

  def __init__(self, directory: str, purge_step: Optional[int]):
    with _torch_hidden():
      from tensorboardX import event_file_writer  # pylint: disable=g-import-not-at-top
      from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top

    self._event_pb2 = event_pb2
    storage.path(directory).mkdir(parents=True, exist_ok=True)
    # The name starts with the second it was opened; the nanoseconds after it keep two
    # files of one second apart and in order (TensorBoard reads them sorted by name).
    self._writer = event_file_writer.EventsWriter(
      os.path.join(directory, 'events'), filename_suffix=f'.{time.time_ns()}'
    )
    if purge_step is not None:
      # TensorBoard hides the events of earlier files at and after this step: the steps a
      # resumed run writes again.
      self._write(
        self._event_pb2.Event(
          step=purge_step,
          session_log=self._event_pb2.SessionLog(status=self._event_pb2.SessionLog.START),
        )
      )

  def _write(self, event) -> None:
    event.wall_time = time.time()
    self._writer.write_event(event)
    self._writer.flush()

  def write_summary(self, step: int, summary) -> None:
    self._write(self._event_pb2.Event(step=step, summary=summary))

  def close(self) -> None:
    self._writer.close()


class MetricsWriter:
  """Appends {'step': s, **scalars} to workdir/metrics.jsonl and to TensorBoard.

  `resume_step` (a resumed run) first cuts both histories back to that step: records after
  it are dropped from metrics.jsonl (the run writes them again), TensorBoard is told to hide
  its later events, and every readable record up to it is kept.
  """

  def __init__(
    self,
    workdir: str,
    enabled: bool = True,
    resume_step: Optional[int] = None,
    tensorboard: bool = True,
  ):
    self.enabled = enabled
    self.path = os.path.join(workdir, METRICS_FILE)
    self._tb: Optional[_EventFile] = None
    if not enabled:
      return
    storage.path(workdir).mkdir(parents=True, exist_ok=True)
    if resume_step is not None:
      self._truncate_after(resume_step)
    # Object stores cannot append: there metrics.jsonl is rewritten whole on each write.
    self._lines: list[str] = []
    self._file: Optional[IO[str]] = None
    if storage.is_uri(self.path):
      self._lines = [json.dumps(r) + '\n' for r in read_jsonl(self.path)]
    else:
      self._file = open(self.path, 'a')
    if tensorboard:
      self._tb = _EventFile(
        os.path.join(workdir, 'tensorboard'), None if resume_step is None else resume_step + 1
      )

  def _truncate_after(self, step: int) -> None:
    """Drops records past the restored step: a resumed run redoes them, without duplicates.

    Every readable record up to `step` is kept. Damaged lines are left out of metrics.jsonl
    but not lost: they are appended to metrics.damaged.txt (with their line numbers) and
    reported in one warning.
    """
    records, damaged = _read_records(self.path)
    kept = [r for r in records if r['step'] <= step]
    damaged_path = self.path.replace('.jsonl', '.damaged.txt')
    if damaged:
      earlier = storage.path(damaged_path)
      lines = ''.join(f'{self.path}:{number}: {line.rstrip(chr(10))}\n' for number, line in damaged)
      storage.write_atomic(damaged_path, (earlier.read_text() if earlier.exists() else '') + lines)
      logging.warning(
        '%s: %d damaged line(s) skipped (line %s), copied to %s; the %d '
        'readable records up to step %d are kept.',
        self.path,
        len(damaged),
        ', '.join(str(n) for n, _ in damaged[:10]),
        damaged_path,
        len(kept),
        step,
      )
    if len(kept) == len(records) and not damaged:
      return
    storage.write_atomic(self.path, ''.join(json.dumps(r) + '\n' for r in kept))

  def write(self, step: int, scalars: Mapping[str, Any]) -> None:
    """TensorBoard first, then metrics.jsonl (what a resumed run reads to know what is
    done): a kill between the two can repeat a point in TensorBoard, never lose one."""
    if not self.enabled:
      return
    record = {'step': int(step), **{k: _plain(v) for k, v in scalars.items()}}
    if self._tb is not None:
      from tensorboardX import summary  # pylint: disable=g-import-not-at-top

      for k, v in record.items():
        if k != 'step' and isinstance(v, (int, float)) and not isinstance(v, bool):
          self._tb.write_summary(step, summary.scalar(k, v))
    line = json.dumps(record) + '\n'
    if self._file is None:
      self._lines.append(line)
      storage.write_atomic(self.path, ''.join(self._lines))
    else:
      self._file.write(line)
      self._file.flush()

  def write_image(self, step: int, name: str, grid_HxWx3: np.ndarray) -> None:
    if self.enabled and self._tb is not None:
      from tensorboardX import summary  # pylint: disable=g-import-not-at-top

      self._tb.write_summary(step, summary.image(name, np.asarray(grid_HxWx3), dataformats='HWC'))

  def flush(self) -> None:
    if self.enabled and self._file is not None:
      self._file.flush()

  def close(self) -> None:
    if self.enabled:
      if self._file is not None:
        self._file.close()
      if self._tb is not None:
        self._tb.close()
