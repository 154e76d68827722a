"""Joining a multi-process JAX job, and doing one-off work on process 0 first.

A multi-host run starts the same command on every host (or every process of a job); each
process calls `initialize` before any JAX computation. How the processes find each other:

- explicitly: coordinator_address (process 0's host:port), num_processes, process_id;
- otherwise JAX's own cluster detection (`jax.distributed.initialize()` without
  arguments): Cloud TPU VMs and pod slices (through the TPU metadata), GKE TPU jobs,
  SLURM, Open MPI and Kubernetes, or a coordinator in JAX_COORDINATOR_ADDRESS.

Mode 'auto' joins a job only when one of those environments is present, so the same
command also runs as a single process on a laptop. jax is imported only when a function
needs it, so the tools can define these flags before loading it.
"""

import os
from typing import Callable, Optional, TypeVar

from absl import flags
from absl import logging

MODES = ('auto', 'on', 'off')
# How long the other processes wait for process 0's one-off work (e.g. preparing a dataset).
CHIEF_FIRST_TIMEOUT_S = 3600

T = TypeVar('T')


class DistributedError(RuntimeError):
  """The process could not join the job, or the job lost a process; the message says why."""


def cluster_environment() -> Optional[str]:
  """The name of the multi-process environment JAX would join, or None.

  Asks the cluster types that `jax.distributed.initialize()` itself tries (the opt-in
  mpi4py method excluded, as JAX does), plus JAX_COORDINATOR_ADDRESS.
  """
  if os.environ.get('JAX_COORDINATOR_ADDRESS'):
    return 'JAX_COORDINATOR_ADDRESS'
  from jax._src import clusters  # pylint: disable=g-import-not-at-top

  for env in clusters.ClusterEnv._cluster_types:  # pylint: disable=protected-access
    if not env.opt_in_only_method and env.is_env_present():
      return env.__name__
  return None


def initialize(
  mode: str = 'auto',
  coordinator_address: Optional[str] = None,
  num_processes: Optional[int] = None,
  process_id: Optional[int] = None,
  timeout_s: int = 300,
) -> bool:
  """Joins the multi-process job described by the arguments or the environment.

  Args:
    mode: 'auto' joins when an argument is given or cluster_environment() finds a job;
      'on' always calls jax.distributed.initialize (it fails without a job); 'off' never.
    coordinator_address: 'host:port' of process 0 (the same on every process).
    num_processes: the number of processes in the job.
    process_id: this process's index, 0 .. num_processes - 1.
    timeout_s: how long to wait for the other processes to connect.

  Returns:
    Whether jax.distributed was initialised.

  Raises:
    DistributedError: bad arguments, or the other processes did not connect in time.
  """
  import jax  # pylint: disable=g-import-not-at-top

  if mode not in MODES:
    raise DistributedError(f'--distributed={mode!r} must be one of {MODES}.')
  explicit = {
    'coordinator_address': coordinator_address,
    'num_processes': num_processes,
    'process_id': process_id,
  }
  given = {k: v for k, v in explicit.items() if v is not None}
  if mode == 'off':
    if given:
      raise DistributedError(f'--distributed=off contradicts --{", --".join(given)}.')
    return False
  environment = 'flags' if given else cluster_environment()
  if mode == 'auto' and environment is None:
    return False
  if num_processes is not None and num_processes < 1:
    raise DistributedError(f'--num_processes={num_processes} must be >= 1.')
  if process_id is not None and not 0 <= process_id < (num_processes or process_id + 1):
    raise DistributedError(f'--process_id={process_id} must lie in [0, --num_processes).')
  logging.info(
    'Joining a multi-process JAX job (%s: %s).', environment or 'JAX detection', given or 'detected'
  )
  try:
    jax.distributed.initialize(
      coordinator_address=coordinator_address,
      num_processes=num_processes,
      process_id=process_id,
      initialization_timeout=timeout_s,
    )
  except (ValueError, RuntimeError) as e:
    reason = ' '.join(str(e).split())[:300]
    raise DistributedError(
      f'Cannot join the multi-process job ({type(e).__name__}: {reason}). Start every '
      "process with the same --coordinator_address (process 0's host:port) and "
      '--num_processes, each with its own --process_id, or run with --distributed=off.'
    ) from e
  return True


def barrier(name: str, timeout_s: float) -> None:
  """Blocks until every process reached `barrier(name)`; a no-op in a single process."""
  import jax  # pylint: disable=g-import-not-at-top

  if jax.process_count() == 1:
    return
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top

  client = jax_distributed.global_state.client
  if client is None:
    raise DistributedError(f'Barrier {name!r} needs jax.distributed (not initialised).')
  try:
    client.wait_at_barrier(name, timeout_in_ms=int(timeout_s * 1000))
  except Exception as e:  # pylint: disable=broad-except
    reason = ' '.join(str(e).split())[:300]
    raise DistributedError(
      f'Process {jax.process_index()} waited at barrier {name!r} for up to {timeout_s:.0f}s '
      f'and the other processes did not all arrive ({reason}).'
    ) from e


def chief_first(name: str, fn: Callable[[], T], timeout_s: float = CHIEF_FIRST_TIMEOUT_S) -> T:
  """Runs fn on process 0, then on every other process once process 0 is done.

  For one-off work on shared storage that must not run concurrently, such as preparing a
  dataset: process 0 does it, the others then find it done (or, with storage that is not
  shared, do their own copy). An error of process 0 is raised after the barrier, so the
  others do not wait out the timeout; they then meet the same error themselves.
  """
  import jax  # pylint: disable=g-import-not-at-top

  if jax.process_count() == 1:
    return fn()
  if jax.process_index() == 0:
    try:
      result = fn()
    finally:
      barrier(name, timeout_s)
    return result
  barrier(name, timeout_s)
  return fn()


def define_flags() -> None:
  """--distributed, --coordinator_address, --num_processes, --process_id (for the tools)."""
  flags.DEFINE_enum(
    'distributed',
    'auto',
    list(MODES),
    'Multi-process runs: "auto" joins a job when --coordinator_address etc. '
    'are given or JAX detects one (Cloud TPU VM pod slices, GKE, SLURM, Open '
    'MPI, Kubernetes, JAX_COORDINATOR_ADDRESS); "on" always joins (an error '
    'without a job); "off" never does.',
  )
  flags.DEFINE_string(
    'coordinator_address',
    None,
    "Process 0's host:port, the same on every process (default: detected).",
  )
  flags.DEFINE_integer('num_processes', None, 'Processes in the job (default: detected).')
  flags.DEFINE_integer(
    'process_id', None, "This process's index, 0 .. num_processes - 1 (default: detected)."
  )


def initialize_from_flags() -> bool:
  """initialize() with the values of the flags of define_flags."""
  f = flags.FLAGS
  return initialize(f.distributed, f.coordinator_address, f.num_processes, f.process_id)
