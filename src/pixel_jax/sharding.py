"""Data parallelism on a 1-D ('data',) mesh: replicated state, batch split over devices.

The same code runs on one CPU, 8 GPUs or a multi-host TPU pod: every process feeds its own
slice of the global batch and jax.make_array_from_process_local_data assembles the global
array, so nothing here assumes a single host.
"""

from typing import Any, Optional

import jax
from jax.sharding import AxisType
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

DATA_AXIS = 'data'


def make_mesh(num_devices: int = -1, devices: Optional[list[Any]] = None) -> Mesh:
  """A ('data',) mesh over the first num_devices devices (-1: all of them).

  The axis is Auto: the model was not written for sharding-in-types, and with a replicated
  state and a batch-sharded input XLA's propagation already gives plain data parallelism.
  """
  devices = list(jax.devices() if devices is None else devices)
  if num_devices == -1:
    num_devices = len(devices)
  if not 1 <= num_devices <= len(devices):
    raise ValueError(
      f'config.mesh.num_devices={num_devices} must be -1 or between 1 and '
      f'the {len(devices)} available devices.'
    )
  if num_devices != len(devices) and jax.process_count() > 1:
    raise ValueError('config.mesh.num_devices must be -1 on a multi-host run.')
  return Mesh(np.array(devices[:num_devices]), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Parameters and optimiser state: a full copy on every device."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batches: the leading (example) axis split over the 'data' axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(
  batch_size: int, num_devices: int, field: str = 'config.train.batch_size'
) -> None:
  """Raises a ValueError naming `field` unless the batch splits evenly over the devices."""
  if not isinstance(batch_size, int) or batch_size < 1 or batch_size % num_devices:
    example = num_devices * max(1, -(-int(batch_size or 1) // num_devices))
    raise ValueError(
      f'{field}={batch_size!r} must be a positive multiple of the '
      f'{num_devices} devices on the mesh (e.g. {example}); set {field} or '
      'config.mesh.num_devices.'
    )


def local_slice(global_batch_size: int, mesh: Mesh) -> slice:
  """The rows of each global batch that this process feeds (its devices' share)."""
  per_device = global_batch_size // mesh.devices.size
  local = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
  return slice(local[0] * per_device, (local[-1] + 1) * per_device)


def to_global(local_batch: np.ndarray, mesh: Mesh, global_batch_size: int) -> jax.Array:
  """Assembles the global, batch-sharded jax.Array from this process's rows."""
  shape = (global_batch_size,) + tuple(local_batch.shape[1:])
  return jax.make_array_from_process_local_data(batch_sharding(mesh), local_batch, shape)


def shard_global_batch(batch: np.ndarray, mesh: Mesh) -> jax.Array:
  """Given the whole global batch on every process, keeps this process's rows and shards."""
  return to_global(np.asarray(batch)[local_slice(len(batch), mesh)], mesh, len(batch))
