"""Crash points for testing recovery: `PIXEL_JAX_KILL_AT=<point>:<step>` makes the training
process SIGKILL itself when it reaches that point at that step.

The points sit between the writes of a run (train step, checkpoint, evaluation record,
best checkpoint, sample grid, final record), so a test can stop a run at each of them and
check that the resumed run ends exactly as an uninterrupted one. Unset (always, outside
such tests), `point` costs one comparison.
"""

import os
import signal
from typing import Callable, Optional

ENV = 'PIXEL_JAX_KILL_AT'
_TARGET = os.environ.get(ENV)


def point(name: str, step: int, before: Optional[Callable[[], None]] = None) -> None:
  """SIGKILLs this process if PIXEL_JAX_KILL_AT is `name:step` (after calling `before`,
  e.g. to let an asynchronous checkpoint finish first)."""
  if _TARGET is not None and _TARGET == f'{name}:{step}':
    if before is not None:
      before()
    os.kill(os.getpid(), signal.SIGKILL)
