"""The workdir of a training run: one writer at a time, and one-line reasons it is unusable.

`lock(workdir)` makes the training process (process 0 of a multi-host job) the only writer:
it holds an exclusive `flock` on WORKDIR/pixel_jax.lock for the whole run and writes its host
and PID into the file. The kernel drops the lock when the process ends, however it ends, so a
lock left by a killed run is simply taken over by the next one. A second run on the same
workdir stops at once, naming the holder. Readers (evaluate, sample) take no lock: every
checkpoint appears on disk by an atomic rename, so they never see half of one.

A workdir in an object store (gs://...) cannot be locked: there `lock` only warns.

`check_usable(workdir)` and `describe_os_error(error)` turn "the workdir is a file", "read-only"
and "no space left" into one line that says which and where.
"""

import errno
import fcntl
import json
import os
import re
import socket
import sys
import time
from typing import Optional

from absl import logging

from pixel_jax import storage

LOCK_FILE = 'pixel_jax.lock'
_HELD: set[str] = set()  # Lock files this process holds.

# errno -> what it means for a workdir, in words.
_OS_ERRORS = {
  errno.ENOSPC: 'no space left on the device',
  errno.EDQUOT: 'disk quota exceeded',
  errno.EROFS: 'the filesystem is read-only',
  errno.EACCES: 'permission denied',
  errno.EPERM: 'operation not permitted',
  errno.ENOTDIR: 'a path component is a file, not a directory',
  errno.EISDIR: 'it is a directory',
  errno.EFBIG: 'file too large for this filesystem or limit',
}


class WorkdirError(RuntimeError):
  """A workdir that cannot be used, in one line: which problem and where."""


class WorkdirLockedError(WorkdirError):
  """Another live process is training in this workdir."""


def _errno_and_path(e: BaseException) -> tuple[Optional[int], Optional[str]]:
  """An OSError's errno and path; for the errors of libraries that report one in their
  message (orbax/TensorStore: '... "path" ... [os_error_code='28']'), parsed from it."""
  if isinstance(e, OSError) and e.errno is not None:
    return e.errno, e.filename
  match = re.search(r"os_error_code='(\d+)'|\[Errno (\d+)\]", str(e))
  if not match:
    return None, None
  path = re.search(r'"(/[^"]+)"', str(e))
  return int(match.group(1) or match.group(2)), path.group(1) if path else None


def describe_os_error(error: BaseException, workdir: Optional[str] = None) -> Optional[str]:
  """One line for a storage error (full disk, read-only, ...) in `error` or its causes, else
  None."""
  seen = set()
  e: Optional[BaseException] = error
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    code, path = _errno_and_path(e)
    if code in _OS_ERRORS:
      where = path or workdir or 'the workdir'
      advice = (
        'free some space or use another --workdir, then rerun the same command to resume'
        if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        else 'use a writable --workdir'
      )
      return f'cannot write {where}: {_OS_ERRORS[code]}; {advice}.'
    e = e.__cause__ or e.__context__
  return None


def check_usable(workdir: str) -> str:
  """Creates workdir if needed and returns its absolute path.

  Raises WorkdirError when it is a file, cannot be created, or cannot be written (read-only
  filesystem, permissions, a full disk), naming the path.
  """
  root = storage.path(workdir)
  path = os.fspath(root)
  try:
    if root.exists() and not root.is_dir():
      raise WorkdirError(f'--workdir={path} is a file, not a directory; use another --workdir.')
    root.mkdir(parents=True, exist_ok=True)
    probe = root / f'.pixel_jax_write_test.{os.getpid()}'
    probe.write_text('ok')
    probe.unlink()
  except OSError as e:
    raise WorkdirError(describe_os_error(e, path) or f'cannot use --workdir={path}: {e}') from e
  except Exception as e:  # pylint: disable=broad-except
    if not storage.is_uri(path):
      raise
    # Object-store clients raise their own errors (no credentials, no such bucket, ...).
    raise WorkdirError(
      f'cannot write --workdir={path} ({storage.error_text(e)}); '
      'check the bucket name and your credentials.'
    ) from e
  return path


def _holder_text(holder: dict) -> str:
  if not holder:
    return 'another process'
  since = holder.get('since')
  since = f', since {time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))}' if since else ''
  return f'pid {holder.get("pid")} on host {holder.get("host")}{since}'


def _read_holder(path: str) -> dict:
  try:
    with open(path) as f:
      return json.loads(f.read() or '{}')
  except (OSError, ValueError):
    return {}


class WorkdirLock:
  """An exclusive lock on a workdir for this process's lifetime (or until release())."""

  def __init__(self, workdir: str):
    self.path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
    self._fd: Optional[int] = None

  def acquire(self) -> 'WorkdirLock':
    try:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise WorkdirError(
        describe_os_error(e, self.path) or f'cannot create {self.path}: {e}'
      ) from e
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(fd)
      raise WorkdirLockedError(
        f'{os.path.dirname(self.path)} is in use by another training run '
        f'({_holder_text(_read_holder(self.path))}); wait for it to finish or use another '
        '--workdir.'
      ) from None
    except OSError as e:  # A filesystem without locks: run, but say what is not guarded.
      logging.warning(
        'Cannot lock %s (%s): a second run on this workdir would not be stopped.', self.path, e
      )
    previous = _read_holder(self.path)
    me = {
      'host': socket.gethostname(),
      'pid': os.getpid(),
      'since': time.time(),
      'command': ' '.join(sys.argv),
    }
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, json.dumps(me).encode(), 0)
    except OSError as e:
      os.close(fd)
      raise WorkdirError(describe_os_error(e, self.path) or f'cannot write {self.path}: {e}') from e
    if previous:
      logging.warning(
        'Took over the lock of a run that ended without releasing it (%s).', _holder_text(previous)
      )
    self._fd = fd
    _HELD.add(self.path)
    return self

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      os.ftruncate(self._fd, 0)  # An empty lock file: the last run ended cleanly.
    except OSError:
      pass
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None
    _HELD.discard(self.path)

  def __enter__(self) -> 'WorkdirLock':
    return self.acquire() if self._fd is None else self

  def __exit__(self, *exc) -> None:
    self.release()


class _NoLock:
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    pass


def lock(workdir: str, enabled: bool = True):
  """A context manager holding the workdir lock for its block; a no-op when this process
  holds it already, or when not `enabled` (processes other than 0 of a multi-host job)."""
  if storage.is_uri(workdir):
    if enabled:
      logging.warning(
        '%s is in an object store, which has no file locks: nothing stops a '
        'second training run on it; start only one.',
        workdir,
      )
    return _NoLock()
  workdir_lock = WorkdirLock(workdir)
  return workdir_lock if enabled and workdir_lock.path not in _HELD else _NoLock()
