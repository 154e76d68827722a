"""What a run prints: absl log lines above the progress bar, without third-party chatter;
and how a command-line tool starts (`run_tool`).

The command-line tools call `quiet_library_logs()` once and run inside
`logs_above_bar()`. Library use (a notebook) is left alone.
"""

import contextlib
import logging as std_logging
import sys
from typing import Any, Callable, Iterator

from absl import app
from absl import logging
import jax
import tqdm


class _QuietTfds(std_logging.Filter):
  """Drops TFDS's "Load dataset info from ..." (one per builder it creates; many per run)."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not (
      '/tensorflow_datasets/' in record.pathname
      and str(record.msg).startswith('Load dataset info from')
    )


def quiet_library_logs() -> None:
  """Installs the filters on the absl handler (idempotent)."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _QuietTfds) for f in handler.filters):
    handler.addFilter(_QuietTfds())


@contextlib.contextmanager
def logs_above_bar() -> Iterator[None]:
  """Inside: each absl log line first clears the tqdm bars on the terminal, is written on a
  line of its own, and the bars are drawn again below it (tqdm's external write mode)."""
  handler = logging.get_absl_handler().python_handler  # The one that writes the lines.
  emit, patched_before = handler.emit, 'emit' in vars(handler)

  def emit_above_bar(record: std_logging.LogRecord) -> None:
    with tqdm.tqdm.external_write_mode(file=sys.stderr):
      emit(record)

  handler.emit = emit_above_bar  # type: ignore[method-assign]  # This object only.
  try:
    yield
  finally:
    if patched_before:
      handler.emit = emit  # type: ignore[method-assign]
    else:
      del handler.emit


def run_tool(
  main: Callable[[list[str]], Any],
  define_flags: Callable[[], None],
  flags_parser: Callable[[list[str]], Any] = app.parse_flags_with_usage,
) -> None:
  """Runs a command-line tool (`python -m pixel_jax.<tool>`): defines its flags, lets JAX's
  own flags (e.g. --jax_platforms) be given with them, and runs `main` under absl."""
  define_flags()
  jax.config.config_with_absl()
  app.run(main, flags_parser=flags_parser)
