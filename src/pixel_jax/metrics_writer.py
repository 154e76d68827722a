"""Metrics to metrics.jsonl (one JSON object per line) and TensorBoard event files.

Only process 0 writes; the others get a writer that does nothing, so callers need no
`if jax.process_index() == 0` of their own.
"""

import json
import math
import os
from typing import Any, Mapping, Optional

import numpy as np


def _plain(value: Any) -> Any:
  """numpy/jax scalars -> Python numbers; non-finite floats -> strings (valid JSON)."""
  if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0:
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


def read_jsonl(path: str) -> list[dict]:
  """All records of a metrics.jsonl; an unfinished last line (killed writer) is skipped."""
  records: list[dict] = []
  if not os.path.exists(path):
    return records
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return records


class MetricsWriter:
  """Appends {'step': s, **scalars} to workdir/metrics.jsonl and to TensorBoard."""

  def __init__(self, workdir: str, enabled: bool = True, resume_step: Optional[int] = None,
               tensorboard: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    if resume_step is not None:
      self._truncate_after(resume_step)
    self._file = open(self.path, 'a')
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def _truncate_after(self, step: int) -> None:
    """Drops records past the restored step: a resumed run redoes them, without duplicates."""
    records = [r for r in read_jsonl(self.path) if r.get('step', 0) <= step]
    tmp = self.path + '.tmp'
    with open(tmp, 'w') as f:
      for r in records:
        f.write(json.dumps(r) + '\n')
    os.replace(tmp, self.path)

  def write(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    record = {'step': int(step), **{k: _plain(v) for k, v in scalars.items()}}
    self._file.write(json.dumps(record) + '\n')
    self._file.flush()
    if self._tb is not None:
      for k, v in record.items():
        if k != 'step' and isinstance(v, (int, float)) and not isinstance(v, bool):
          self._tb.add_scalar(k, v, step)

  def write_image(self, step: int, name: str, grid_HxWx3: np.ndarray) -> None:
    if self.enabled and self._tb is not None:
      self._tb.add_image(name, np.asarray(grid_HxWx3), step, dataformats='HWC')

  def flush(self) -> None:
    if self.enabled:
      self._file.flush()
      if self._tb is not None:
        self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._file.close()
      if self._tb is not None:
        self._tb.close()
