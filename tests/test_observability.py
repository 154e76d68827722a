"""What a run shows: log lines beside the progress bar, quiet TFDS, and profiler traces."""

import glob
import logging as std_logging
import os
import subprocess
import sys

from absl import logging
import jax
import jax.numpy as jnp
import tqdm

from pixel_jax import checkpointing
from pixel_jax import console
from pixel_jax import profiler


def _record(pathname, msg):
  args = ('/d',) if '%s' in msg else ()
  return std_logging.LogRecord('absl', std_logging.WARNING, pathname, 1, msg, args, None)


def _filter_installed_once(install, filter_class):
  """Calls install() twice and returns the absl handler, which must hold one filter of
  filter_class (installing is idempotent)."""
  install()
  install()
  handler = logging.get_absl_handler()
  assert sum(isinstance(f, filter_class) for f in handler.filters) == 1
  return handler


def test_tfds_dataset_info_lines_are_dropped_and_others_kept():
  handler = _filter_installed_once(console.quiet_library_logs, console._QuietTfds)
  tfds_file = '/venv/site-packages/tensorflow_datasets/core/dataset_info.py'
  assert not handler.filter(_record(tfds_file, 'Load dataset info from %s'))
  assert handler.filter(_record(tfds_file, 'Reusing dataset %s'))
  assert handler.filter(_record('/src/pixel_jax/train.py', 'Load dataset info from %s'))


def _raised_from(filename):
  """The exc_info of an error raised by code that lives in `filename`."""
  code = compile("raise ValueError('RESOURCE_EXHAUSTED: No space left')", filename, 'exec')
  try:
    exec(code)  # pylint: disable=exec-used
  except ValueError:
    return sys.exc_info()
  raise AssertionError('not raised')


def test_orbax_write_failures_asyncio_logs_at_exit_are_dropped():
  # A save whose writes fail on a full disk: the run reports the first failure in one line;
  # asyncio logs the others ("Task exception was never retrieved") with a traceback.
  handler = _filter_installed_once(checkpointing.quiet_orbax_logs, checkpointing._QuietOrbax)
  asyncio_file = '/usr/lib/python3/asyncio/base_events.py'

  def record(exc_info):
    return std_logging.LogRecord(
      'asyncio',
      std_logging.ERROR,
      asyncio_file,
      1,
      'Task exception was never retrieved',
      (),
      exc_info,
    )

  assert not handler.filter(record(_raised_from('/venv/site-packages/orbax/checkpoint/x.py')))
  assert handler.filter(record(_raised_from('/src/pixel_jax/train.py')))  # Not orbax's: kept.
  assert handler.filter(record(None))


def _log_while_bar_is_shown(capsys, above_bar: bool) -> str:
  capsys.readouterr()
  bar = tqdm.tqdm(total=10, file=sys.stderr, desc='bar', mininterval=0)
  bar.update(3)
  # Straight to the absl handler: under pytest the root logger's handlers are pytest's own.
  emit = lambda: logging.get_absl_handler().handle(_record('/src/x.py', 'a log line'))
  if above_bar:
    with console.logs_above_bar():
      emit()
  else:
    emit()
  bar.close()
  return capsys.readouterr().err


def _screen_line_before(text, needle):
  """What the terminal line holds just before `needle` is printed on it."""
  head = text[: text.index(needle)]
  return head.replace('\r', '\n').split('\n')[-1]


def test_log_lines_start_on_a_line_of_their_own(capsys):
  _log_while_bar_is_shown(capsys, above_bar=False)  # absl's one-off "before flag parsing".
  glued = _log_while_bar_is_shown(capsys, above_bar=False)
  assert '3/10' in _screen_line_before(glued, 'a log line')  # The failure it prevents.
  out = _log_while_bar_is_shown(capsys, above_bar=True)
  assert 'bar' not in _screen_line_before(out, 'a log line')  # The bar was cleared first,
  assert '3/10' in out[out.index('a log line') :]  # and drawn again below.
  assert 'emit' not in vars(logging.get_absl_handler().python_handler)  # Restored.


def _run_steps(steps_profiler, num_steps):
  x = jnp.ones(4)
  double = jax.jit(lambda v: v * 2)
  for step in range(1, num_steps + 1):
    steps_profiler.step_starting(step)
    x = double(x)
    steps_profiler.step_dispatched(step, x)
  steps_profiler.stop()


def test_profile_steps_write_a_trace_into_the_workdir(tmp_path):
  _run_steps(profiler.StepProfiler((2, 3), str(tmp_path)), 5)
  [run] = glob.glob(str(tmp_path / 'profile' / 'plugins' / 'profile' / '*'))
  names = os.listdir(run)
  assert any(n.endswith('.xplane.pb') for n in names), names
  assert 'perfetto_trace.json.gz' in names


def test_no_profile_when_resuming_past_the_steps(tmp_path):
  _run_steps(profiler.StepProfiler((2, 3), str(tmp_path), start_step=3), 5)
  _run_steps(profiler.StepProfiler((), str(tmp_path)), 2)
  assert not (tmp_path / 'profile').exists()


def test_tensorboard_writer_does_not_import_torch(tmp_path):
  """tensorboardX imports any installed torch; the metrics writer keeps it out (seconds at
  every start where torch is installed, e.g. Colab) and leaves `import torch` working."""
  fake = tmp_path / 'site' / 'torch'
  fake.mkdir(parents=True)
  (fake / '__init__.py').write_text('Tensor = object\n')
  script = (
    'import sys\n'
    'from pixel_jax import metrics_writer\n'
    f'writer = metrics_writer.MetricsWriter({str(tmp_path / "run")!r})\n'
    "writer.write(1, {'loss': 2.0})\n"
    "assert 'torch' not in sys.modules, 'tensorboardX imported torch'\n"
    'import torch\n'
    'assert torch.Tensor is object\n'
    "print('ok')\n"
  )
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / 'site'), *sys.path]))
  result = subprocess.run(
    [sys.executable, '-c', script], env=env, capture_output=True, text=True, timeout=120
  )
  assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr[-2000:]
  assert glob.glob(str(tmp_path / 'run' / 'tensorboard' / 'events*'))
