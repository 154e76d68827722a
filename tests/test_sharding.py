"""Data parallelism: the ('data',) mesh, batch placement, and 8 devices == 1 device."""

import jax
import numpy as np
import pytest

from pixel_jax import main
from pixel_jax import sharding
from pixel_jax import train


def test_mesh_and_batch_placement():
  assert jax.device_count() == 8  # tests/conftest.py fakes 8 CPU devices.
  mesh = sharding.make_mesh()
  assert dict(mesh.shape) == {'data': 8}
  assert dict(sharding.make_mesh(2).shape) == {'data': 2}
  batch = np.arange(16 * 2 * 2 * 1, dtype=np.uint8).reshape(16, 2, 2, 1)
  x = sharding.shard_global_batch(batch, mesh)
  assert x.shape == batch.shape
  np.testing.assert_array_equal(np.asarray(x), batch)
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start)
  assert [s.data.shape[0] for s in shards] == [2] * 8
  np.testing.assert_array_equal(np.asarray(shards[3].data), batch[6:8])
  assert sharding.local_slice(16, mesh) == slice(0, 16)  # One process feeds everything.


def test_bad_mesh_and_batch_size_name_the_field():
  with pytest.raises(ValueError, match=r'config.train.batch_size=12 .* 8 devices .*e.g. 16'):
    sharding.check_batch_size(12, 8)
  sharding.check_batch_size(24, 8)
  with pytest.raises(ValueError, match='config.mesh.num_devices=9'):
    sharding.make_mesh(9)


@pytest.mark.slow  # Trains end to end, twice.
def test_eight_devices_give_the_same_training_as_one(tmp_path, tiny_config):
  results = {}
  for n in (1, 8):
    config = tiny_config()
    config.mesh.num_devices = n
    config.train.update(num_steps=4, log_every=1, eval_every=0, sample_every=0, checkpoint_every=0)
    config.eval.max_examples = 16
    state, summary = train.train_and_evaluate(config, str(tmp_path / str(n)))
    leaf = jax.tree.leaves(state.params)[0]
    assert len(leaf.sharding.device_set) == n
    results[n] = (state, summary)
  (s1, r1), (s8, r8) = results[1], results[8]
  np.testing.assert_allclose(r8['initial_train_loss'], r1['initial_train_loss'], rtol=1e-5)
  np.testing.assert_allclose(r8['train_loss'], r1['train_loss'], rtol=1e-4)
  np.testing.assert_allclose(r8['eval_loss'], r1['eval_loss'], rtol=1e-4)
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s8.params), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_multihost_environment_is_recognised(monkeypatch):
  """`--distributed=auto` joins a multi-process job only when the environment names one."""
  for name in ('JAX_COORDINATOR_ADDRESS', 'SLURM_NTASKS', 'TPU_WORKER_HOSTNAMES'):
    monkeypatch.delenv(name, raising=False)
  assert not main._multihost_environment([])
  for name, value, multihost in (
    ('SLURM_NTASKS', '1', False),
    ('SLURM_NTASKS', '4', True),
    ('TPU_WORKER_HOSTNAMES', 'w0', False),
    ('TPU_WORKER_HOSTNAMES', 'w0,w1', True),
    ('JAX_COORDINATOR_ADDRESS', '10.0.0.1:1234', True),
  ):
    with monkeypatch.context() as m:
      m.setenv(name, value)
      assert main._multihost_environment([]) == multihost, (name, value)
