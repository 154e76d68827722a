"""Trains and evaluates a PixelRNN / PixelCNN from an experiment config.

  python -m pixel_jax.main --config=experiments/mnist_rowlstm.py --workdir=/tmp/run1
  python -m pixel_jax.main --config=mnist_rowlstm --workdir=/tmp/run1   # from any directory
  python -m pixel_jax.main --config=experiments/tiny.py --workdir=/tmp/t \
      --config.train.num_steps=50

This file is intentionally kept short: everything else lives in importable libraries
(pixel_jax.train) that also work from a notebook cell. Re-running the same command resumes
from the latest checkpoint in --workdir.
"""

import faulthandler
import logging as std_logging
import os
import sys
import threading
import traceback
from typing import Callable, Optional, TextIO

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import tqdm

from pixel_jax import config_files
from pixel_jax import distributed
from pixel_jax import interrupts
from pixel_jax import workdir as workdir_lib

# jax and the model code (configs, train) are imported in parse_flags / main, after a busy
# workdir has had its chance to stop the run: a second run then exits in a fraction of a
# second instead of after seconds of imports.

FLAGS = flags.FLAGS
LOG_FILE = 'pixel_jax.log'  # In a local workdir: every log line and traceback of each run.
# After the error line everything of the run is on disk; a library thread that blocks the
# interpreter's shutdown (seen once after SIGTERM under heavy load) may hold it this long.
EXIT_GRACE_S = 30


def define_flags() -> None:
  """Defines this tool's flags. Called only when run as a program, so the library
  modules main, evaluate and sample can be imported together (shared flag names)."""
  config_flags.DEFINE_config_file(
    'config',
    None,
    'A shipped config name (mnist_rowlstm) or a config file (experiments/mnist_rowlstm.py).',
    lock_config=True,
  )
  flags.DEFINE_string(
    'workdir',
    None,
    'Directory for checkpoints, metrics and samples: a '
    'local path or a URI such as gs://bucket/run (shared by all hosts).',
  )
  distributed.define_flags()
  flags.mark_flags_as_required(['config', 'workdir'])


def _log_to_file(path: str) -> None:
  """Also writes every log record (tracebacks included) to `path`; stops quietly when the
  file cannot be written (a full disk must not add a traceback per log line)."""

  class Handler(std_logging.FileHandler):
    def handleError(self, record):  # pylint: disable=invalid-name
      std_logging.getLogger('absl').removeHandler(self)
      try:
        self.close()
      except OSError:
        self.stream = None

  handler = Handler(path)
  handler.setLevel(std_logging.INFO)
  handler.setFormatter(std_logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
  std_logging.getLogger('absl').addHandler(handler)


def _thread_exception_to_log(args: threading.ExceptHookArgs) -> None:
  """Background threads (asynchronous checkpoint writers) that fail put their traceback in
  the log (the workdir's log file); the main thread reports the failure in one line."""
  logging.debug(
    'Exception in thread %s', args.thread.name if args.thread else '?', exc_info=args.exc_value
  )
  if FLAGS.verbosity >= 1:
    threading.__excepthook__(args)


def _unraisable_to_log(args) -> None:
  """Errors Python can only ignore (an asynchronous checkpoint reader's event loop closed
  at exit) go to the log, not to the terminal."""
  logging.debug('Ignored in %r: %s', args.object, args.exc_value)


def _multihost_environment(argv: list[str]) -> bool:
  """Whether this may be one process of a multi-process job, judged without importing jax
  (main joins the job itself through distributed.initialize_from_flags)."""
  if any(_flag_value(argv, f) for f in ('coordinator_address', 'num_processes', 'process_id')):
    return True
  env = os.environ
  if env.get('JAX_COORDINATOR_ADDRESS'):
    return True
  if int(env.get('SLURM_NTASKS', '1') or 1) > 1:
    return True
  return len([h for h in env.get('TPU_WORKER_HOSTNAMES', '').split(',') if h]) > 1


def _flag_value(argv: list[str], name: str) -> Optional[str]:
  """The value of --name=VALUE or --name VALUE in argv (the last one), else None."""
  value = None
  for k, arg in enumerate(argv):
    if arg.startswith(f'--{name}='):
      value = arg.split('=', 1)[1]
    elif arg == f'--{name}' and k + 1 < len(argv):
      value = argv[k + 1]
  return value


def parse_flags(argv: list[str]) -> list[str]:
  """Takes the lock of an existing --workdir first (one process, no multi-host job: it is
  process 0), so a second run on a busy workdir stops before the config file, jax and the
  model code load; then config_files.parse_flags. JAX's own --jax_* flags are accepted."""
  workdir = _flag_value(argv, 'workdir')
  distributed = _flag_value(argv, 'distributed') or 'auto'
  single_process = distributed == 'off' or (
    distributed == 'auto' and not _multihost_environment(argv)
  )
  if workdir and single_process and os.path.isdir(workdir):
    try:
      workdir_lib.lock(workdir).__enter__()  # Held until the process ends.
    except workdir_lib.WorkdirError as e:
      sys.exit(f'pixel_jax: error: {e}')
  import jax  # pylint: disable=g-import-not-at-top

  jax.config.config_with_absl()
  return config_files.parse_flags(argv)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Too many command-line arguments: {argv[1:]}')
  # pylint: disable=g-import-not-at-top
  import jax

  from pixel_jax import checkpointing
  from pixel_jax import configs
  from pixel_jax import console
  from pixel_jax import storage
  from pixel_jax import train

  # pylint: enable=g-import-not-at-top
  checkpointing.quiet_orbax_logs()
  console.quiet_library_logs()
  try:
    config = FLAGS.config
    config.keys()  # A config file that failed to load raises on first use.
  except Exception as e:  # pylint: disable=broad-except
    spec = FLAGS['config'].config_filename
    sys.exit(f'pixel_jax: error: {config_files.config_error_line(e, [f"--config={spec}"])}')
  # Ctrl-C and SIGTERM end the run with one line (the training loop at a step boundary).
  interrupts.install()
  threading.excepthook = _thread_exception_to_log
  if FLAGS.verbosity < 1:
    sys.unraisablehook = _unraisable_to_log
  log_path = os.path.join(os.fspath(storage.path(FLAGS.workdir)), LOG_FILE)
  try:
    configs.validate(config)  # Every field, before the workdir or a device is touched.
    distributed.initialize_from_flags()
    is_chief = jax.process_index() == 0
    if is_chief:  # Before any device work: a busy or unusable workdir costs nothing.
      workdir_lib.check_usable(FLAGS.workdir)
    with workdir_lib.lock(FLAGS.workdir, enabled=is_chief):
      if is_chief and not storage.is_uri(log_path):  # Object stores cannot append.
        _log_to_file(log_path)
      logging.info(
        'JAX process %d / %d; local devices: %s',
        jax.process_index(),
        jax.process_count(),
        jax.local_devices(),
      )
      logging.info(
        'Global devices: %d x %s (%s backend)',
        jax.device_count(),
        jax.devices()[0].device_kind,
        jax.default_backend(),
      )
      with console.logs_above_bar():
        train.train_and_evaluate(config, FLAGS.workdir)
  except train.USER_ERRORS as e:
    _exit(str(e), log_path)
  except KeyboardInterrupt:
    _exit('interrupted before training started; rerun the same command to start.', log_path)
  except Exception as e:  # pylint: disable=broad-except
    line = workdir_lib.describe_os_error(e, os.path.abspath(FLAGS.workdir))
    if line is not None:
      # The writers left open by a failed disk would print their own tracebacks at exit.
      _exit(line, log_path, skip_exit_handlers=True)
    if FLAGS.verbosity >= 1:
      raise
    _exit(
      f'{type(e).__name__}: {" ".join(str(e).split())[:300]} (the traceback is in '
      f'{log_path}; --verbosity=1 prints it)',
      log_path,
    )


def _exit(line: str, log_path: str, skip_exit_handlers: bool = False) -> None:
  """Ends the program with one line; the traceback goes to the workdir's log file (and to
  stderr under --verbosity=1)."""
  if FLAGS.verbosity >= 1:
    traceback.print_exc()
  _append_to_log(
    log_path, lambda f: f.write(traceback.format_exc() + f'pixel_jax: error: {line}\n')
  )
  sys.stdout.flush()
  # On a line of its own: a progress bar still open (the run stopped inside the loop) is
  # closed first, which ends its line.
  for bar in list(getattr(tqdm.tqdm, '_instances', ())):
    bar.close()
  sys.stderr.write(f'pixel_jax: error: {line}\n')
  sys.stderr.flush()
  if skip_exit_handlers:
    os._exit(1)  # pylint: disable=protected-access
  watchdog = threading.Timer(EXIT_GRACE_S, _end_stuck_exit, args=(log_path,))
  watchdog.daemon = True
  watchdog.start()
  sys.exit(1)


def _end_stuck_exit(log_path: str) -> None:
  """Ends a process whose shutdown has hung for EXIT_GRACE_S, after writing every
  thread's stack to the workdir's log (what held it)."""

  def dump_threads(f):
    f.write(f'Exit took over {EXIT_GRACE_S} s; the threads were at:\n')
    f.flush()
    faulthandler.dump_traceback(file=f, all_threads=True)

  try:
    _append_to_log(log_path, dump_threads)
  finally:
    os._exit(1)  # pylint: disable=protected-access


def _append_to_log(log_path: str, write: Callable[[TextIO], object]) -> None:
  """Calls write(f) on the workdir's log opened for appending; skipped when the workdir is
  not a local folder or the log cannot be written (a full disk)."""
  try:
    if os.path.isdir(os.path.dirname(log_path)):
      with open(log_path, 'a') as f:
        write(f)
  except OSError:
    pass


if __name__ == '__main__':
  define_flags()
  app.run(main, flags_parser=parse_flags)
