"""Running the command-line tools as real processes: one, or a multi-process JAX job.

Every wait is bounded and every process started here is killed (if still alive) before the
function returns, whatever happens.
"""

import dataclasses
import os
import socket
import subprocess
import sys
import time
from typing import Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Finished:
  returncode: Optional[int]  # None: killed at the deadline.
  output: str  # stdout and stderr together.


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on right now."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def python_env(**extra: str) -> dict[str, str]:
  """The environment of a child python: this checkout's sources first, plus `extra`."""
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
    [os.path.join(REPO, 'src')] + [p for p in [env.get('PYTHONPATH')] if p]
  )
  env.update(extra)
  return env


def run_all(
  commands: Sequence[Sequence[str]],
  envs: Sequence[dict[str, str]],
  cwd: str,
  timeout_s: float,
  failed_grace_s: float = 30,
) -> list[Finished]:
  """Starts every command at once, waits for all of them until `timeout_s` (or
  failed_grace_s after one of them failed), and kills those still running.

  Output goes to files, not pipes, so a chatty process never blocks on a full pipe.
  """
  procs, logs = [], []
  try:
    for i, (command, env) in enumerate(zip(commands, envs)):
      log = open(os.path.join(cwd, f'process_{i}_{time.monotonic_ns()}.log'), 'w+')
      logs.append(log)
      procs.append(
        subprocess.Popen(
          list(command),
          cwd=cwd,
          env=env,
          stdout=log,
          stderr=subprocess.STDOUT,
          stdin=subprocess.DEVNULL,
        )
      )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
      if any(p.poll() not in (None, 0) for p in procs):
        # One failed: the others would wait for it at the next collective; not for long.
        deadline = min(deadline, time.monotonic() + failed_grace_s)
      time.sleep(0.2)
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)
  results = []
  for proc, log in zip(procs, logs):
    log.seek(0)
    results.append(Finished(proc.returncode if proc.returncode >= 0 else None, log.read()))
    log.close()
  return results


def run_jax_job(
  module: str, args: Sequence[str], num_processes: int, cwd: str, timeout_s: float = 480
) -> list[Finished]:
  """`python -m module args` as a JAX job of num_processes processes, one CPU device each,
  joined through a coordinator on 127.0.0.1 with gloo CPU collectives."""
  port = free_port()
  env = python_env(
    XLA_FLAGS='--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0',
    JAX_PLATFORMS='cpu',
    JAX_CPU_COLLECTIVES_IMPLEMENTATION='gloo',
    # The coordinator listens on the loopback interface only.
    JAX_COORDINATOR_BIND_ADDRESS=f'127.0.0.1:{port}',
  )
  commands = [
    [
      sys.executable,
      '-m',
      module,
      *args,
      f'--coordinator_address=127.0.0.1:{port}',
      f'--num_processes={num_processes}',
      f'--process_id={i}',
    ]
    for i in range(num_processes)
  ]
  return run_all(commands, [env] * num_processes, cwd, timeout_s)
