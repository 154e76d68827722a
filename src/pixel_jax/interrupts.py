"""Ctrl-C and SIGTERM (a preempted job): the training loop stops at a step boundary.

A KeyboardInterrupt raised by a signal handler lands at whatever bytecode the main thread
is running. Inside a finalizer or a weakref callback Python reports it as unraisable and
goes on (the run then finished as if no signal had come); inside a library's own
bookkeeping (a lock taken, a thread being joined) it can leave that state half done (the
process then hung at exit). So while the training loop runs (`deferred()`), the handler only
records the signal and the loop raises it at its next step boundary (`check()`). Anywhere
else, and for a second signal, the handler raises at once.
"""

import contextlib
import signal
from typing import Iterator, Optional

_deferring = False
_requested: Optional[str] = None


def handler(signum, frame) -> None:  # pylint: disable=unused-argument
  """The SIGINT / SIGTERM handler (installed by main)."""
  global _requested
  name = signal.Signals(signum).name
  if _deferring and _requested is None:
    _requested = name
    return
  raise KeyboardInterrupt(name)


def install() -> None:
  """Ctrl-C, and SIGTERM, end the run through `handler`; SIGINT too when the shell started
  this process with it ignored (a background job of a script)."""
  signal.signal(signal.SIGTERM, handler)
  signal.signal(signal.SIGINT, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
  """Inside: a signal is recorded and raised by the next `check()`."""
  global _deferring, _requested
  _deferring, _requested = True, None
  try:
    yield
  finally:
    _deferring = False


def check() -> None:
  """Raises KeyboardInterrupt if a signal came since `deferred()` was entered."""
  if _requested is not None:
    raise KeyboardInterrupt(_requested)
