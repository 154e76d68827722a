"""config.train.profile_steps: a jax.profiler trace of chosen training steps.

  python -m pixel_jax.main ... --config.train.profile_steps='(10, 12)'   # steps 10 to 12

The trace covers the first through the last step named (a range), host and device activity
included, and lands in WORKDIR/profile/plugins/profile/<time>/ as
  <host>.xplane.pb           for TensorBoard's profile plugin:
                             pip install tensorboard tensorboard-plugin-profile
                             tensorboard --logdir WORKDIR/profile   (the "Profile" tab)
  perfetto_trace.json.gz     for https://ui.perfetto.dev ("Open trace file").
Steps at the start of a run include compilation: profile a few steps after the first.
Every process of a multi-host run writes its own trace, into WORKDIR/profile/process_<i>/.
With a URI workdir (gs://...) the trace is written to a local temporary directory and
copied there when it stops.
"""

import os
import shutil
import tempfile
from typing import Any, Optional, Sequence

from absl import logging
import jax

from pixel_jax import storage

PROFILE_DIR = 'profile'


class StepProfiler:
  """Starts a trace before the first profiled step and stops it after the last one."""

  def __init__(self, profile_steps: Sequence[int], workdir: str, start_step: int = 0):
    """profile_steps: step numbers (configs.validate checked them); () profiles nothing."""
    steps = tuple(profile_steps or ())
    self.first, self.last = (min(steps), max(steps)) if steps else (0, 0)
    if steps and self.first <= start_step:
      logging.info(
        'Not profiling steps %d-%d: the run resumes after step %d.',
        self.first,
        self.last,
        start_step,
      )
      self.first = self.last = 0
    self.logdir = os.path.join(workdir, PROFILE_DIR)
    if jax.process_count() > 1:  # Processes may share a host name: one folder each.
      self.logdir = os.path.join(self.logdir, f'process_{jax.process_index()}')
    self._trace_dir: Optional[str] = None

  def step_starting(self, step: int) -> None:
    if step != self.first:
      return
    self._trace_dir = (
      tempfile.mkdtemp(prefix='pixel_jax_profile_') if storage.is_uri(self.logdir) else self.logdir
    )
    jax.profiler.start_trace(self._trace_dir, create_perfetto_trace=True)

  def step_dispatched(self, step: int, outputs: Any) -> None:
    """After `step` was dispatched: at the last profiled step, waits for its `outputs` and
    stops the trace."""
    if step == self.last and self._trace_dir is not None:
      jax.block_until_ready(outputs)
      self.stop()

  def stop(self) -> None:
    """Stops a running trace (also when the run ends early) and puts it in WORKDIR."""
    if self._trace_dir is None:
      return
    trace_dir, self._trace_dir = self._trace_dir, None
    jax.profiler.stop_trace()
    if trace_dir != self.logdir:
      for root, _, files in os.walk(trace_dir):
        for name in files:
          local = os.path.join(root, name)
          with open(local, 'rb') as f:
            storage.write_atomic(
              os.path.join(self.logdir, os.path.relpath(local, trace_dir)), f.read()
            )
      shutil.rmtree(trace_dir, ignore_errors=True)
    logging.info(
      'Profile of steps %d-%d written to %s: open it with `tensorboard --logdir %s` '
      '(Profile tab; pip install tensorboard-plugin-profile) or load its '
      'perfetto_trace.json.gz in https://ui.perfetto.dev.',
      self.first,
      self.last,
      self.logdir,
      self.logdir,
    )
