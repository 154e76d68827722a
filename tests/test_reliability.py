"""Faults and bad input: the workdir lock, checkpoint integrity, resumable history, one-line
errors, and runs killed anywhere that end exactly like an uninterrupted run.

Each row of the reliability table in docs/results.md names the test here that covers it.
"""

import json
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import tiny
from pixel_jax import checkpointing
from pixel_jax import interrupts
from pixel_jax import metrics_writer
from pixel_jax import models
from pixel_jax import optim
from pixel_jax import sharding
from pixel_jax import train
from pixel_jax import train_state
from pixel_jax import workdir as workdir_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = os.path.join(REPO, 'experiments', 'tiny.py')


def _parts(config):
  mesh = sharding.make_mesh(config.mesh.num_devices)
  return mesh, models.get_model(config), optim.make_optimizer(config)


def _snapshot(root) -> dict:
  """{relative path: bytes} of every file under root."""
  out = {}
  for dirpath, _, files in os.walk(root):
    for f in files:
      path = os.path.join(dirpath, f)
      with open(path, 'rb') as fh:
        out[os.path.relpath(path, root)] = fh.read()
  return out


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _checkpoint_files(step_dir):
  """The data files of a checkpoint (largest first); which of them hold live arrays is up
  to orbax's database, so the corruption tests damage all of them."""
  files = [
    os.path.join(d, f)
    for d, _, fs in os.walk(step_dir)
    for f in fs
    if os.sep + 'd' + os.sep in os.path.join(d, f)
  ]
  return sorted(files, key=os.path.getsize, reverse=True)


# ----------------------------------------------------------------------------------------
# A saved run without training: config.json and checkpoints at steps 3 and 6.


@pytest.fixture(name='saved_template', scope='module')
def fixture_saved_template(tmp_path_factory):
  config = tiny.get_config()
  mesh, model, tx = _parts(config)
  workdir = tmp_path_factory.mktemp('saved')
  state = train_state.init_state(config, model, tx, mesh)
  ckpt = checkpointing.Checkpointer(str(workdir), keep=3)
  ckpt.save(3, state.replace(step=state.step + 3))
  later = state.replace(step=state.step + 6, params=jax.tree.map(lambda x: x + 1.0, state.params))
  ckpt.save(6, later)
  ckpt.save_best(6, later, 40.0)
  ckpt.close()
  checkpointing.save_config(str(workdir), config)
  return workdir


@pytest.fixture(name='saved')
def fixture_saved(saved_template, tmp_path):
  """(config, workdir, abstract target) on a fresh copy of the saved run."""
  workdir = tmp_path / 'run'
  shutil.copytree(saved_template, workdir)
  config = tiny.get_config()
  mesh, model, tx = _parts(config)
  return config, workdir, train_state.abstract_state(config, model, tx, mesh)


# ----------------------------------------------------------------------------------------
# The workdir lock.


def test_second_writer_is_refused_naming_the_holder(tmp_path):
  first = workdir_lib.WorkdirLock(str(tmp_path)).acquire()
  with pytest.raises(workdir_lib.WorkdirLockedError) as info:
    workdir_lib.WorkdirLock(str(tmp_path)).acquire()
  message = str(info.value)
  assert f'pid {os.getpid()} on host {socket.gethostname()}' in message
  assert 'in use by another training run' in message and '\n' not in message
  first.release()
  workdir_lib.WorkdirLock(str(tmp_path)).acquire().release()  # Free again.


def test_lock_of_a_killed_run_is_taken_over(tmp_path, caplog):
  dead = subprocess.run(
    [sys.executable, '-c', 'import os; print(os.getpid())'],
    capture_output=True,
    text=True,
    check=True,
  )
  (tmp_path / workdir_lib.LOCK_FILE).write_text(
    json.dumps({'host': socket.gethostname(), 'pid': int(dead.stdout), 'since': time.time()})
  )
  with caplog.at_level(logging.WARNING):
    lock = workdir_lib.WorkdirLock(str(tmp_path)).acquire()
  assert f'pid {int(dead.stdout)}' in caplog.text and 'Took over the lock' in caplog.text
  holder = json.loads((tmp_path / workdir_lib.LOCK_FILE).read_text())
  assert holder['pid'] == os.getpid()
  lock.release()


class _OtherProcessHoldsLock:
  """Another process holding the workdir lock, as a concurrent training run would."""

  def __init__(self, workdir):
    code = (
      'import sys, time; from pixel_jax import workdir; '
      f'workdir.WorkdirLock({str(workdir)!r}).acquire(); print("held", flush=True); '
      'sys.stdin.read()'
    )
    self.proc = subprocess.Popen(
      [sys.executable, '-c', code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )

  def __enter__(self):
    assert self.proc.stdout.readline().strip() == 'held'
    return self.proc

  def __exit__(self, *exc):
    self.proc.stdin.close()
    self.proc.wait(timeout=30)


def test_training_on_a_locked_workdir_stops_before_any_work(saved):
  config, workdir, _ = saved
  before = _snapshot(workdir)
  with _OtherProcessHoldsLock(workdir) as holder:
    with pytest.raises(workdir_lib.WorkdirLockedError) as info:
      train.train_and_evaluate(config, str(workdir))
  assert f'in use by another training run (pid {holder.pid} on host' in str(info.value)
  after = _snapshot(workdir)
  after.pop(workdir_lib.LOCK_FILE)
  before.pop(workdir_lib.LOCK_FILE, None)
  assert after == before


def test_readers_restore_without_the_lock_and_create_nothing(saved):
  config, workdir, target = saved
  shutil.rmtree(workdir / checkpointing.BEST_DIR)
  before = _snapshot(workdir)
  with _OtherProcessHoldsLock(workdir):  # A training run holds the workdir.
    reader = checkpointing.Checkpointer(str(workdir), read_only=True)
    state, step = reader.restore(target)
    reader.close()
  assert step == 6 and int(state.step) == 6
  assert not (workdir / checkpointing.BEST_DIR).exists()
  after = _snapshot(workdir)
  after.pop(workdir_lib.LOCK_FILE)
  assert after == before
  del config


def test_workdir_that_is_a_file_is_one_line(tmp_path):
  path = tmp_path / 'file'
  path.write_text('my notes')
  with pytest.raises(workdir_lib.WorkdirError, match=r'is a file, not a directory'):
    workdir_lib.check_usable(str(path))
  with pytest.raises(workdir_lib.WorkdirError, match=r'a path component is a file'):
    workdir_lib.check_usable(str(path / 'run'))
  assert path.read_text() == 'my notes'


def test_storage_errors_of_checkpoint_writers_are_one_line():
  # How orbax/TensorStore report a full disk: a ValueError with the errno in its text.
  error = ValueError(
    'RESOURCE_EXHAUSTED: Error writing local file "/runs/a/checkpoints/6.'
    'orbax-checkpoint-tmp/_sharding": Failed to write 11232 bytes: No space '
    "left on device [os_error_code='28']"
  )
  line = workdir_lib.describe_os_error(RuntimeError('save failed'), '/runs/a')
  assert line is None
  wrapped = RuntimeError('save failed')
  wrapped.__cause__ = error
  line = workdir_lib.describe_os_error(wrapped, '/runs/a')
  assert line.startswith(
    'cannot write /runs/a/checkpoints/6.orbax-checkpoint-tmp/_sharding: '
    'no space left on the device; free some space'
  )
  read_only = OSError(30, 'Read-only file system', '/runs/b/metrics.jsonl')
  assert workdir_lib.describe_os_error(read_only) == (
    'cannot write /runs/b/metrics.jsonl: the filesystem is read-only; use a writable --workdir.'
  )


# ----------------------------------------------------------------------------------------
# Checkpoint integrity.


def test_truncated_latest_checkpoint_is_set_aside_and_the_previous_restored(saved, caplog):
  config, workdir, target = saved
  for data in _checkpoint_files(workdir / 'checkpoints' / '6'):
    with open(data, 'r+b') as f:
      f.truncate(os.path.getsize(data) // 2)
  corrupt = _snapshot(workdir / 'checkpoints' / '6')
  ckpt = checkpointing.Checkpointer(str(workdir), keep=3)
  with caplog.at_level(logging.WARNING):
    state, step = ckpt.restore(target)
  ckpt.close()
  assert step == 3 and int(state.step) == 3
  warnings = [r.getMessage() for r in caplog.records if 'is unusable' in r.getMessage()]
  assert len(warnings) == 1 and 'corrupt' in warnings[0]
  moved = workdir / checkpointing.SET_ASIDE_DIR / 'checkpoints_6'
  assert _snapshot(moved) == corrupt  # Renamed, byte for byte; never deleted.
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['3']
  del config


def test_bit_flip_of_the_same_size_is_detected(saved):
  _, workdir, target = saved
  for data in _checkpoint_files(workdir / 'checkpoints' / '6'):
    raw = bytearray(open(data, 'rb').read())
    raw[len(raw) // 2] ^= 0x10  # One bit; the size stays.
    open(data, 'wb').write(bytes(raw))
  ckpt = checkpointing.Checkpointer(str(workdir), keep=3)
  _, step = ckpt.restore(target)
  ckpt.close()
  assert step == 3
  assert (workdir / checkpointing.SET_ASIDE_DIR / 'checkpoints_6').is_dir()


def test_arrays_that_differ_from_their_checksums_are_set_aside(saved):
  """Damage that the storage layer's own checks let through (a flipped value in a data
  chunk) reads back as different numbers: the saved checksums catch it."""
  _, workdir, target = saved
  ckpt = checkpointing.Checkpointer(str(workdir), keep=3)
  state, _ = ckpt.restore(target)
  flipped = state.replace(
    step=state.step + 1, params=jax.tree.map(lambda x: x.at[(0,) * x.ndim].add(1e-3), state.params)
  )
  manager = ckpt._latest  # pylint: disable=protected-access
  manager.save(
    7,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(flipped),
      checksums=ocp.args.JsonSave(
        {**checkpointing.checksums(state), 'step': checkpointing.checksums(flipped)['step']}
      ),
    ),
    force=True,
  )
  ckpt.close()
  ckpt = checkpointing.Checkpointer(str(workdir), keep=3)
  _, step = ckpt.restore(target)
  ckpt.close()
  assert step == 6
  assert (workdir / checkpointing.SET_ASIDE_DIR / 'checkpoints_7').is_dir()


def test_every_checkpoint_corrupt_starts_over_keeping_them(saved, caplog):
  config, workdir, target = saved
  for step in ('3', '6'):
    for path in _checkpoint_files(workdir / 'checkpoints' / step):
      open(path, 'wb').write(b'garbage')
  mesh, model, tx = _parts(config)
  ckpt = checkpointing.Checkpointer(str(workdir), keep=3)
  with caplog.at_level(logging.WARNING):
    state, step = train.restore_or_init(config, str(workdir), ckpt, model, tx, mesh, target)
  ckpt.close()
  assert step == 0 and int(state.step) == 0
  assert sorted(os.listdir(workdir / checkpointing.SET_ASIDE_DIR)) == [
    'checkpoints_3',
    'checkpoints_6',
  ]
  assert 'Starting from step 0' in caplog.text


def test_foreign_step_directory_is_set_aside(saved):
  _, workdir, target = saved
  foreign = workdir / 'checkpoints' / '9'
  foreign.mkdir()
  (foreign / 'weights.pkl').write_bytes(b'\x80\x04someone else')
  ckpt = checkpointing.Checkpointer(str(workdir), keep=3)
  _, step = ckpt.restore(target)
  ckpt.close()
  assert step == 6
  moved = workdir / checkpointing.SET_ASIDE_DIR / 'checkpoints_9' / 'weights.pkl'
  assert moved.read_bytes() == b'\x80\x04someone else'


def test_readers_skip_a_corrupt_checkpoint_without_moving_it(saved, caplog):
  _, workdir, target = saved
  for path in _checkpoint_files(workdir / 'checkpoints' / '6'):
    open(path, 'wb').write(b'garbage')
  before = _snapshot(workdir)
  reader = checkpointing.Checkpointer(str(workdir), read_only=True)
  with caplog.at_level(logging.WARNING):
    _, step = reader.restore(target)
  reader.close()
  assert step == 3 and 'trying an older one' in caplog.text
  assert _snapshot(workdir) == before


def test_missing_step_names_the_available_ones(saved):
  _, workdir, target = saved
  reader = checkpointing.Checkpointer(str(workdir), read_only=True)
  with pytest.raises(checkpointing.CheckpointError) as info:
    reader.restore(target, step=999)
  reader.close()
  assert str(info.value) == (
    f'Checkpoint step 999 not found in {workdir}/checkpoints; available: 3, 6.'
  )


def test_checkpoint_flag_must_be_an_integer():
  assert checkpointing.parse_checkpoint_flag('best') == 'best'
  assert checkpointing.parse_checkpoint_flag('1000') == 1000
  with pytest.raises(
    checkpointing.CheckpointError, match=r'^--checkpoint=abc: --checkpoint must be an integer'
  ):
    checkpointing.parse_checkpoint_flag('abc')


@pytest.mark.parametrize(
  'field, value, change',
  [
    ('name', 'rmsprop', 'optimizer changed from adam to rmsprop'),
    ('grad_clip_norm', 0.0, 'config.optim.grad_clip_norm changed from 1.0 to 0.0'),
  ],
)
def test_optimizer_change_resets_its_state_and_keeps_parameters(
  saved, caplog, field, value, change
):
  config, workdir, _ = saved
  config.optim[field] = value
  mesh, model, tx = _parts(config)
  target = train_state.abstract_state(config, model, tx, mesh)
  ckpt = checkpointing.Checkpointer(str(workdir), keep=3)
  with caplog.at_level(logging.WARNING):
    state, step = train.restore_or_init(config, str(workdir), ckpt, model, tx, mesh, target)
  saved_params = ckpt.restore_params(target.params, 6)
  ckpt.close()
  assert step == 6 and int(state.step) == 6
  _assert_trees_equal(state.params, saved_params)
  _assert_trees_equal(state.opt_state, jax.jit(tx.init)(state.params))  # Fresh.
  assert f'{change}: the optimizer state is reset, parameters kept' in caplog.text
  assert not (workdir / checkpointing.SET_ASIDE_DIR).exists()


def test_saving_a_step_that_exists_keeps_or_sets_aside(saved):
  config, workdir, target = saved
  ckpt = checkpointing.Checkpointer(str(workdir), keep=3)
  state, _ = ckpt.restore(target)
  ckpt.save(6, state)  # The same state again (a resumed run redoing step 6): kept as is.
  ckpt.save_best(6, state, 40.0)
  ckpt.wait()
  assert not (workdir / checkpointing.SET_ASIDE_DIR).exists()
  other = state.replace(params=jax.tree.map(lambda x: x * 0.5, state.params))
  ckpt.save(6, other)  # Another state of step 6: the old one moves aside, the new is saved.
  ckpt.close()
  assert (workdir / checkpointing.SET_ASIDE_DIR / 'checkpoints_6').is_dir()
  ckpt = checkpointing.Checkpointer(str(workdir), keep=3)
  restored, step = ckpt.restore(target)
  ckpt.close()
  assert step == 6
  _assert_trees_equal(restored.params, other.params)
  del config


# ----------------------------------------------------------------------------------------
# Resumable history.


def _write_lines(path, lines):
  path.write_text(''.join(line + '\n' for line in lines))


def test_damaged_metrics_line_drops_no_good_record(tmp_path, caplog):
  records = [json.dumps({'step': s, 'train_loss': 40.0 - s}) for s in range(1, 26)]
  lines = records[:7] + ['{"step": 8, "train_lo'] + records[7:]
  _write_lines(tmp_path / 'metrics.jsonl', lines)
  with caplog.at_level(logging.WARNING):
    metrics_writer.MetricsWriter(str(tmp_path), resume_step=20, tensorboard=False).close()
  kept = metrics_writer.read_jsonl(str(tmp_path / 'metrics.jsonl'))
  assert [r['step'] for r in kept] == list(range(1, 21))  # All 20 good records up to 20.
  assert '1 damaged line(s) skipped (line 8)' in caplog.text
  damaged = (tmp_path / 'metrics.damaged.txt').read_text()
  assert 'metrics.jsonl:8: {"step": 8, "train_lo' in damaged


def test_resume_truncates_history_to_the_restored_step(tmp_path):
  _write_lines(
    tmp_path / 'metrics.jsonl',
    [json.dumps({'step': s, 'train_loss': 1.0}) for s in (5, 10, 15, 20)],
  )
  writer = metrics_writer.MetricsWriter(str(tmp_path), resume_step=10, tensorboard=False)
  writer.write(15, {'train_loss': 2.0})
  writer.close()
  records = metrics_writer.read_jsonl(str(tmp_path / 'metrics.jsonl'))
  assert [(r['step'], r['train_loss']) for r in records] == [(5, 1.0), (10, 1.0), (15, 2.0)]


def _tensorboard_events(directory):
  """Every event in the TensorBoard files of `directory`, file by file in name order.

  A file is a sequence of records: length (8 bytes), its checksum (4), the serialized
  Event, the data's checksum (4).
  """
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top

  for name in sorted(os.listdir(directory)):
    data = open(os.path.join(directory, name), 'rb').read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack('<Q', data[pos : pos + 8])
      yield event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
      pos += 12 + length + 4


def test_resumed_tensorboard_purges_redone_steps(tmp_path):
  first = metrics_writer.MetricsWriter(str(tmp_path))
  for step in (5, 10, 15):
    first.write(step, {'train_loss': 1.0})
  first.close()
  second = metrics_writer.MetricsWriter(str(tmp_path), resume_step=10)
  second.write(15, {'train_loss': 2.0})
  second.close()
  events = [(e.step, e.WhichOneof('what')) for e in _tensorboard_events(tmp_path / 'tensorboard')]
  # TensorBoard drops the earlier events at and after a session_log START's step.
  assert (11, 'session_log') in events
  assert events.index((11, 'session_log')) > events.index((15, 'summary'))


# ----------------------------------------------------------------------------------------
# The command line: one line for every user error and interruption.


def _env(**extra):
  """The tests' environment (8 CPU devices, the run's compilation cache, see conftest.py)."""
  return dict(os.environ, PYTHONPATH=os.path.join(REPO, 'src'), **extra)


def _main(args, env=None, timeout=300, **kwargs):
  return subprocess.run(
    [sys.executable, '-m', 'pixel_jax.main', *args],
    env=env or _env(),
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
    **kwargs,
  )


_TOOLS_DRIVER = r"""
import json, os, sys, tempfile
from absl import app
import jax
from pixel_jax import evaluate, main, sample
results = []
for tool, argv in json.loads(sys.argv[1]):
  module = {'main': main, 'evaluate': evaluate, 'sample': sample}[tool]
  with tempfile.TemporaryFile('w+') as err:
    pid = os.fork()
    if pid == 0:  # The child runs the tool as `python -m pixel_jax.<tool>` would.
      os.dup2(err.fileno(), 2)
      sys.stderr = os.fdopen(2, 'w', buffering=1)
      code = 0
      sys.argv = [tool] + argv  # Config overrides are read from sys.argv.
      try:
        module.define_flags()
        if tool == 'main':
          app.run(module.main, argv=[tool] + argv, flags_parser=main.parse_flags)
        else:
          jax.config.config_with_absl()
          app.run(module.main, argv=[tool] + argv)
      except SystemExit as e:  # sys.exit('message') prints the message, exits 1.
        code = e.code if isinstance(e.code, int) else 1
        if e.code is not None and not isinstance(e.code, int):
          print(e.code, file=sys.stderr)
      except BaseException:  # pylint: disable=broad-except
        import traceback; traceback.print_exc(); code = 2
      sys.stderr.flush()
      os._exit(code)
    _, status = os.waitpid(pid, 0)
    err.seek(0)
    results.append([os.waitstatus_to_exitcode(status), err.read()])
print(json.dumps(results))
"""


def _run_tools(cases):
  """[(tool, argv)] -> [CompletedProcess-like (returncode, stderr)], each case run as its
  own process forked from one that imported pixel_jax once (imports dominate a failing
  command's time)."""
  out = subprocess.run(
    [sys.executable, '-c', _TOOLS_DRIVER, json.dumps(cases)],
    env=_env(),
    capture_output=True,
    text=True,
    timeout=900,
    check=True,
  )
  return [
    subprocess.CompletedProcess(case, code, '', err)
    for case, (code, err) in zip(cases, json.loads(out.stdout.splitlines()[-1]))
  ]


def _one_error_line(result, tool='pixel_jax'):
  """The error line of a failed command, after checking it is the only trace of the error."""
  assert result.returncode not in (0, None), result.stderr[-2000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f'{tool}: error: '), result.stderr[-2000:]
  return last[len(f'{tool}: error: ') :]


@pytest.fixture(name='bad_config_dir', scope='module')
def fixture_bad_config_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp('configs')
  (path / 'syntax.py').write_text('def get_config(:\n  pass\n')
  return path


BAD_CONFIGS = [
  (
    ['--config=/no/such/config.py'],
    '--config=/no/such/config.py: no such file and no '
    'shipped config of that name; use a config file path or one of: ',
  ),
  (
    ['--config={bad}/syntax.py'],
    '--config={bad}/syntax.py: syntax error at line 1: invalid syntax.',
  ),
  (
    ['--config={tiny}', '--config.train.num_step=5'],
    '--config.train.num_step=5: '
    "config.train has no field 'num_step'; did you mean config.train.num_steps?",
  ),
  (
    ['--config={tiny}', '--config.trian.num_steps=5'],
    "--config.trian.num_steps=5: config has no field 'trian'; did you mean config.train?",
  ),
  (
    ['--config={tiny}', '--config.train.num_steps=abc'],
    '--config.train.num_steps=abc: config.train.num_steps must be an int.',
  ),
  (['--config={tiny}', '--config.sample.num_samples=0'], 'config.sample.num_samples=0'),
  (['--config={tiny}', '--config.sample.temperature=-1'], 'config.sample.temperature=-1'),
]


@pytest.mark.slow
def test_bad_config_is_one_line_before_any_work(tmp_path, bad_config_dir):
  cases = [
    (
      'main',
      [a.format(bad=bad_config_dir, tiny=TINY) for a in args] + [f'--workdir={tmp_path}/run{k}'],
    )
    for k, (args, _) in enumerate(BAD_CONFIGS)
  ]
  for k, result in enumerate(_run_tools(cases)):
    expected = BAD_CONFIGS[k][1].format(bad=bad_config_dir, tiny=TINY)
    line = _one_error_line(result)
    assert line.startswith(expected), (line, expected)
    assert not (tmp_path / f'run{k}').exists()  # Nothing created.


@pytest.mark.slow
def test_workdir_that_is_a_file_is_one_line_from_every_tool(tmp_path):
  path = tmp_path / 'notes.txt'
  path.write_text('mine')
  main, *readers = _run_tools(
    [
      ('main', [f'--config={TINY}', f'--workdir={path}']),
      ('sample', [f'--workdir={path}']),
      ('evaluate', [f'--workdir={path}']),
    ]
  )
  line = _one_error_line(main)
  assert line == f'--workdir={path} is a file, not a directory; use another --workdir.'
  for result, tool in zip(readers, ('sample', 'evaluate')):
    assert 'is a file, not a directory' in _one_error_line(result, f'pixel_jax.{tool}')
  assert path.read_text() == 'mine'


def _in_mount_namespace(shell_command, env=None):
  """Runs a shell command in a private mount namespace (as its root user), so it can mount
  a read-only or a tiny filesystem that nobody else sees."""
  return subprocess.run(
    ['unshare', '--mount', '--map-root-user', 'sh', '-c', shell_command],
    env=env or _env(),
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )


def _command(workdir, *args):
  return ' '.join(
    [sys.executable, '-m', 'pixel_jax.main', f'--config={TINY}', f'--workdir={workdir}', *args]
  )


@pytest.mark.slow
def test_read_only_workdir_is_one_line(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'notes.txt').write_text('mine')
  result = _in_mount_namespace(f'mount --bind -o ro {workdir} {workdir} && {_command(workdir)}')
  line = _one_error_line(result)
  assert line.startswith(f'cannot write {workdir}/') and 'the filesystem is read-only' in line
  assert os.listdir(workdir) == ['notes.txt']


# A short run whose periodic work coincides at steps 6, 12, 18 and 24 (checkpoint, eval,
# best checkpoint, sample grid); log_every divides checkpoint_every, so every logged
# average covers the same steps whether or not the run was resumed in between.
RUN = [
  '--config.train.num_steps=24',
  '--config.train.checkpoint_every=3',
  '--config.train.eval_every=6',
  '--config.train.sample_every=6',
  '--config.train.log_every=3',
  '--config.train.keep_checkpoints=2',
  '--config.eval.max_examples=32',
]


@pytest.fixture(name='reference', scope='module')
def fixture_reference(tmp_path_factory):
  """One uninterrupted run of RUN: what every interrupted run must end as."""
  workdir = tmp_path_factory.mktemp('reference') / 'run'
  result = _main([f'--config={TINY}', f'--workdir={workdir}', *RUN])
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result.stdout


def _tensorboard_view(directory):
  """What TensorBoard shows: {(tag, step, value)} after each file's purge marker hid the
  earlier files' events at and after its step (images by step only)."""
  shown = []
  for event in _tensorboard_events(directory):
    if event.WhichOneof('what') == 'session_log':
      shown = [e for e in shown if e[1] < event.step]
    elif event.WhichOneof('what') == 'summary':
      for v in event.summary.value:
        if v.tag not in train.TIMING_METRICS:
          shown.append(
            (v.tag, event.step, v.simple_value if v.HasField('simple_value') else 'image')
          )
  return set(shown)


def _outputs(workdir):
  """Everything a run leaves that must not depend on interruptions (timings aside)."""
  config = tiny.get_config()
  for arg in RUN:
    key, value = arg[len('--config.') :].split('=')
    section, field = key.split('.')
    config[section][field] = int(value)
  mesh, model, tx = _parts(config)
  target = train_state.abstract_state(config, model, tx, mesh)
  reader = checkpointing.Checkpointer(str(workdir), read_only=True)
  latest, latest_step = reader.restore(target)
  best, best_step = reader.restore(target, which='best')
  steps = (reader.steps('latest'), reader.steps('best'))
  reader.close()
  records = [
    {k: v for k, v in r.items() if k not in train.TIMING_METRICS}
    for r in metrics_writer.read_jsonl(str(workdir / 'metrics.jsonl'))
  ]
  samples = {
    name: (workdir / 'samples' / name).read_bytes()
    for name in sorted(os.listdir(workdir / 'samples'))
  }
  leftovers = sorted(
    set(os.listdir(workdir))
    - {
      'checkpoints',
      'checkpoints_best',
      'config.json',
      'metrics.jsonl',
      'samples',
      'tensorboard',
      'pixel_jax.lock',
      'pixel_jax.log',
    }
  )
  return {
    'latest': (latest_step, jax.device_get(latest)),
    'best': (best_step, jax.device_get(best)),
    'steps': steps,
    'records': records,
    'samples': samples,
    'leftovers': leftovers,
    'tensorboard': _tensorboard_view(workdir / 'tensorboard'),
  }


def _assert_same_outputs(workdir, reference_dir):
  got, want = _outputs(workdir), _outputs(reference_dir)
  assert got['latest'][0] == want['latest'][0] and got['best'][0] == want['best'][0]
  _assert_trees_equal(got['latest'][1], want['latest'][1])  # Bitwise.
  _assert_trees_equal(got['best'][1], want['best'][1])
  for key in ('steps', 'records', 'samples', 'leftovers', 'tensorboard'):
    assert got[key] == want[key], key


# Each run of the chain is killed at the next point, resuming from what the previous kill
# left. Points at the same step follow one another only where the resumed run is sure to
# reach the next one (its work at that step is still missing); after a kill that races an
# asynchronous save (checkpoint_started, best_started) the next point is at a later step.
# Every kind of point comes at least once; the best save of 24 is among them (it removes
# the best checkpoint of 18: a kill there once left half a step, see checkpointing.py).
KILL_POINTS = [
  'step:2',
  'checkpoint_started:3',
  'checkpoint_written:6',
  'eval_done:6',
  'eval_recorded:6',
  'best_written:12',
  # The final phase.
  'best_started:24',
  'sample_written:24',
  'test_done:24',
  'final_recorded:24',
]


@pytest.mark.slow
def test_killed_anywhere_and_resumed_ends_as_the_uninterrupted_run(tmp_path, reference):
  reference_dir, reference_stdout = reference
  workdir = tmp_path / 'run'
  args = [f'--config={TINY}', f'--workdir={workdir}', *RUN]
  for kill_at in KILL_POINTS:
    result = _main(args, env=_env(PIXEL_JAX_KILL_AT=kill_at))
    assert result.returncode == -signal.SIGKILL, (kill_at, result.stderr[-3000:])
  result = _main(args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Done: 24 steps (from 24)' in result.stdout
  _assert_same_outputs(workdir, reference_dir)
  done = lambda text: text[text.index('| train loss') :]
  assert done(result.stdout) == done(reference_stdout)
  # Rerunning the finished run changes nothing and reports the same numbers.
  again = _main(args)
  assert again.returncode == 0 and done(again.stdout) == done(reference_stdout)
  _assert_same_outputs(workdir, reference_dir)


@pytest.mark.slow
def test_disk_full_is_one_line_and_the_rerun_ends_as_the_uninterrupted_run(tmp_path, reference):
  reference_dir, _ = reference
  mount = tmp_path / 'small_disk'
  mount.mkdir()
  workdir = mount / 'run'
  run = _command(workdir, *RUN)
  result = _in_mount_namespace(
    f'mount -t tmpfs -o size=600k tmpfs {mount} && {{ {run}; echo "rc=$?" >&2; }} && '
    f'mount -o remount,size=16m {mount} && {run} && cp -a {workdir} {tmp_path}/kept',
  )
  lines = result.stderr.strip().splitlines()
  rc_line = [line for line in lines if line.startswith('rc=')]
  assert rc_line == ['rc=1'], result.stderr[-3000:]
  error = lines[lines.index('rc=1') - 1]
  assert error.startswith(f'pixel_jax: error: cannot write {workdir}') and (
    'no space left on the device; free some space' in error
  ), error
  assert 'Traceback' not in result.stderr
  assert result.returncode == 0, result.stderr[-3000:]
  _assert_same_outputs(tmp_path / 'kept', reference_dir)


@pytest.mark.slow
def test_second_main_on_a_workdir_stops_at_once_and_the_first_finishes(tmp_path, reference):
  reference_dir, _ = reference
  workdir = tmp_path / 'run'
  args = [f'--config={TINY}', f'--workdir={workdir}', *RUN]
  first = subprocess.Popen(
    [sys.executable, '-m', 'pixel_jax.main', *args],
    env=_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  lock = workdir / workdir_lib.LOCK_FILE
  while first.poll() is None and not (lock.exists() and lock.read_text()):
    time.sleep(0.05)
  second = _main(args)
  assert first.poll() is None  # The second stopped while the first was still running.
  line = _one_error_line(second)
  assert line.startswith(
    f'{workdir} is in use by another training run (pid {first.pid} on host {socket.gethostname()}'
  )
  out, err = first.communicate(timeout=300)
  assert first.returncode == 0, err[-3000:]
  _assert_same_outputs(workdir, reference_dir)


def _interrupted_once_checkpoint_exists(args, checkpoint, signum):
  """Runs main until `checkpoint` is saved, sends it `signum`, and checks its one line:
  the step it stopped at and the newest checkpoint, which is on disk. Returns that step."""
  proc = subprocess.Popen(
    [sys.executable, '-m', 'pixel_jax.main', *args],
    env=_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  while proc.poll() is None and not checkpoint.exists():
    time.sleep(0.02)
  proc.send_signal(signum)
  _, err = proc.communicate(timeout=120)
  line = _one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, '', err))
  match = re.fullmatch(
    r'interrupted at step (\d+); checkpoint at step (\d+); rerun the same '
    r'command to resume\.',
    line,
  )
  assert match, line
  stopped, saved = int(match.group(1)), int(match.group(2))
  assert saved <= stopped < 24
  assert saved == max(int(s) for s in os.listdir(checkpoint.parent))
  return stopped


@pytest.mark.slow
def test_interruption_is_one_line_and_the_rerun_resumes(tmp_path, reference):
  """Ctrl-C (SIGINT), then a SIGTERM (a scheduler's stop) in the resumed run: each stops
  with one line at a step boundary, and the last rerun ends as the uninterrupted run."""
  reference_dir, _ = reference
  workdir = tmp_path / 'run'
  args = [f'--config={TINY}', f'--workdir={workdir}', *RUN]
  first = _interrupted_once_checkpoint_exists(args, workdir / 'checkpoints' / '6', signal.SIGINT)
  assert (workdir / 'pixel_jax.log').read_text().count('Traceback') >= 1  # Kept there.
  second = _interrupted_once_checkpoint_exists(args, workdir / 'checkpoints' / '12', signal.SIGTERM)
  assert first < second
  rerun = _main(args)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  _assert_same_outputs(workdir, reference_dir)


@pytest.fixture(name='npy_inputs', scope='module')
def fixture_npy_inputs(tmp_path_factory):
  path = tmp_path_factory.mktemp('npy')
  np.save(path / 'float.npy', np.zeros((2, 8, 8, 1), np.float32))
  np.save(path / 'shape.npy', np.zeros((2, 9, 9, 1), np.uint8))
  np.save(path / 'range.npy', np.full((2, 8, 8, 1), 5, np.uint8))
  return path


BAD_FLAGS = [
  ('evaluate', ['--checkpoint=abc'], '--checkpoint=abc: --checkpoint must be an integer'),
  (
    'evaluate',
    ['--checkpoint=999'],
    'Checkpoint step 999 not found in {run}/checkpoints; available: 21, 24.',
  ),
  ('evaluate', ['--max_examples=-5'], 'config.eval.max_examples=-5'),
  ('sample', ['--num_samples=0'], 'config.sample.num_samples=0'),
  ('sample', ['--temperature=-1'], 'config.sample.temperature=-1'),
  (
    'sample',
    ['--complete={npy}/float.npy'],
    '--complete: {npy}/float.npy holds float32 values; give integer levels',
  ),
  (
    'sample',
    ['--complete={npy}/shape.npy'],
    '--complete: {npy}/shape.npy holds an array of shape (2, 9, 9, 1); the model reads',
  ),
  (
    'sample',
    ['--complete={npy}/range.npy'],
    '--complete: {npy}/range.npy holds levels in [5, 5]; the model reads levels in [0, 1]',
  ),
  ('sample', ['--complete=validation', '--keep_rows=99'], '--keep_rows=99 must lie in'),
]


@pytest.mark.slow
def test_bad_flags_of_evaluate_and_sample_are_one_line_before_any_work(
  tmp_path, reference, npy_inputs
):
  run, _ = reference
  before = _snapshot(run)
  out = tmp_path / 'out'
  cases = [
    (
      tool,
      [f'--workdir={run}']
      + [a.format(npy=npy_inputs) for a in args]
      + ([f'--output_dir={out}'] if tool == 'sample' else []),
    )
    for tool, args, _ in BAD_FLAGS
  ]
  for (tool, _, expected), result in zip(BAD_FLAGS, _run_tools(cases)):
    line = _one_error_line(result, f'pixel_jax.{tool}')
    assert line.startswith(expected.format(run=run, npy=npy_inputs)), line
  assert not out.exists()  # Nothing sampled or written.
  assert _snapshot(run) == before


@pytest.mark.slow
def test_exit_held_by_a_library_thread_ends_after_the_grace(tmp_path):
  """After the one error line, a thread that never ends (as a library's stuck writer would)
  cannot keep the process alive: it ends after EXIT_GRACE_S, with every thread's stack in
  the workdir's log."""
  log_path = tmp_path / 'pixel_jax.log'
  code = (
    'import threading\n'
    'from pixel_jax import main\n'
    'main.define_flags()\n'
    'main.FLAGS.mark_as_parsed()\n'
    'main.EXIT_GRACE_S = 1\n'
    'threading.Thread(target=threading.Event().wait, name="stuck_writer").start()\n'
    f'main._exit("interrupted at step 6", {str(log_path)!r})\n'
  )
  result = subprocess.run(
    [sys.executable, '-c', code], env=_env(), capture_output=True, text=True, timeout=60
  )
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == 'pixel_jax: error: interrupted at step 6'
  log = log_path.read_text()
  assert 'Exit took over 1 s; the threads were at:' in log and 'in wait' in log


def test_a_signal_in_the_training_loop_stops_it_at_the_next_step_boundary():
  """Inside the loop the handler only records the signal (a KeyboardInterrupt raised at an
  arbitrary bytecode can be swallowed by a finalizer or leave a library's lock held);
  check() raises it. Outside the loop, and for a second signal, it raises at once."""
  with pytest.raises(KeyboardInterrupt, match='SIGTERM'):
    interrupts.handler(signal.SIGTERM, None)
  with interrupts.deferred():
    interrupts.check()  # Nothing recorded yet.
    interrupts.handler(signal.SIGTERM, None)  # Recorded, not raised.
    with pytest.raises(KeyboardInterrupt, match='SIGINT'):
      interrupts.handler(signal.SIGINT, None)  # A second signal: at once.
    with pytest.raises(KeyboardInterrupt, match='SIGTERM'):
      interrupts.check()
  with interrupts.deferred():
    interrupts.check()  # A new loop starts with nothing recorded.
