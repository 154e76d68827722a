"""Run files on local disk or cloud storage: every workdir path goes through etils.epath.

A workdir may be a local directory or a URI that etils.epath understands: gs://bucket/run
(Google Cloud Storage, through gcsfs, or TensorFlow's gfile when TensorFlow is installed),
s3://..., az://... Checkpoints go through orbax, which also uses epath (and tensorstore for
the arrays). A multi-host run needs a workdir that every host sees: a bucket, or a shared
filesystem.

Object stores have no rename and no append: `write_atomic` writes a local file under a
temporary name and renames it, and uploads an object in one piece (an object becomes
visible only whole).

Inputs are read through the same paths (`path(p).read_bytes()`, `.iterdir()`, ...);
`read_error_text` turns a failed read into one line that names the path and what to do.
"""

import io
import os
from typing import Optional, Union

from etils import epath
import numpy as np

PathLike = Union[str, os.PathLike]


def is_uri(path: PathLike) -> bool:
  """Whether `path` names remote storage (gs://, s3://, ...) rather than a local file."""
  return '://' in os.fspath(path)


def path(p: PathLike) -> epath.Path:
  """An epath.Path for `p`: URIs as they are, local paths made absolute (~ expanded)."""
  text = os.fspath(p)
  if is_uri(text):
    return epath.Path(text)
  return epath.Path(os.path.abspath(os.path.expanduser(text)))


def error_text(e: BaseException) -> str:
  """An error of a storage client as one line: its type and message, whitespace folded."""
  reason = ' '.join(str(e).split())[:300]
  return f'{type(e).__name__}: {reason}' if reason else type(e).__name__


def read_error_text(e: BaseException, p: PathLike) -> Optional[str]:
  """One line for a failed read of `p` (a file or a folder), or None when `e` is no
  storage error.

  Local files fail with OSError; object-store clients also raise their own errors (no
  credentials, no such bucket, ...), so for a URI every error is the storage's.
  """
  shown = os.fspath(p)
  if is_uri(shown):
    return f'cannot read {shown} ({error_text(e)}); check the bucket name and your credentials.'
  if isinstance(e, OSError):
    return f'cannot read {shown} ({error_text(e)}); give a path that you can read.'
  return None


def write_atomic(p: PathLike, data: Union[str, bytes]) -> epath.Path:
  """Writes `data` to `p` so that a reader sees the old file or the new one, never half.

  Creates the parent directory. Returns the path.
  """
  target = path(p)
  target.parent.mkdir(parents=True, exist_ok=True)
  first = target if is_uri(target) else target.parent / f'.{target.name}.tmp{os.getpid()}'
  try:
    if isinstance(data, bytes):
      first.write_bytes(data)
    else:
      first.write_text(data)
  except OSError:
    if first != target:  # A failed write (e.g. a full disk) leaves no partial file behind.
      first.unlink(missing_ok=True)
    raise
  if first != target:
    first.replace(target)
  return target


def save_npy(p: PathLike, array: np.ndarray) -> str:
  """np.save to a local path or a URI, whole or not at all; returns the path as given."""
  npy = io.BytesIO()
  np.save(npy, array)
  write_atomic(p, npy.getvalue())
  return os.fspath(p)
