"""Shared test setup: 8 fake CPU devices, strict rank promotion, the repository's experiment
configs importable as `experiments`, the `tiny_config` fixture, and what `make test-fast`
runs (see pytest_collection_modifyitems)."""

import os
import pathlib
import shutil
import sys
import tempfile

# Must be set before jax initialises its backends so multi-device tests see 8 CPU devices.
# The tests' models are tiny: compiling dominates their time and LLVM's optimisation passes
# dominate compiling, so the suite (and every process it starts, which inherits the variable)
# compiles with them off: about half the CPU time of the suite. It changes how fast the code
# runs, not what it computes; the benchmarks and users' runs keep XLA's default level.
os.environ['XLA_FLAGS'] = (
  os.environ.get('XLA_FLAGS', '')
  + ' --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0'
).strip()

# One persistent compilation cache for the whole run: both pytest-xdist workers (started
# by this process, so they inherit the variable) and every process a test starts. The tests
# build the same tiny models again and again; the first compile of each is stored and the
# others load it (the same executable, so the same numbers). Removed when the run ends.
_CACHE_OWNER = 'JAX_COMPILATION_CACHE_DIR' not in os.environ
if _CACHE_OWNER:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='pixel_jax_test_jax_cache_')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import jax  # noqa: E402  (after XLA_FLAGS)
import ml_collections  # noqa: E402
import pytest  # noqa: E402

from pixel_jax import configs  # noqa: E402

# Implicit rank promotion hides shape bugs (e.g. [B] + [B, 1] -> [B, B]); make it an error.
jax.config.update('jax_numpy_rank_promotion', 'raise')

# `from experiments import tiny` in a test reads the clone's experiments/ folder, the files
# that `--config=tiny` resolves to.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def make_tiny_config(
  name: str = 'row_lstm', *, channels: int = 1, levels: int = 2, size: int = 8, **model
) -> ml_collections.ConfigDict:
  """A fresh tiny config: configs.tiny_config(name) (2 layers, h = 8, 8x8 bundled digits,
  batch 8, Adam), with its image shape and any `config.model` fields replaced."""
  config = configs.tiny_config(name)
  config.data.image_size = size
  config.data.num_channels = channels
  config.data.num_levels = levels
  config.model.update(model)
  return config


@pytest.fixture(scope='session')
def tiny_config():
  """The tiny-config factory: `tiny_config('pixelcnn', channels=3, levels=256, size=6)`.

  Every call returns a new ConfigDict, so a test may change it freely. Session-scoped so
  that module-level caches keyed on it (built models, compiled functions) are shared.
  """
  return make_tiny_config


def pytest_collection_modifyitems(config, items):
  """`make test-fast` (`-m "not slow"`) runs every test function once: the first case of a
  parametrized test stays fast, its other cases are marked slow, like the tests that start
  processes or train a run end to end. `make test` runs every case.

  The tests marked slow in their module (processes, end-to-end runs: the longest, up to
  ~90 s each) are collected first. pytest-xdist hands tests out in collection order, so the
  long ones are spread over the workers early and the short ones fill the gaps, instead of
  one long test starting last and running alone.
  """
  del config
  long_first = sorted(items, key=lambda item: item.get_closest_marker('slow') is None)
  items[:] = long_first
  seen = set()
  for item in items:
    if getattr(item, 'callspec', None) is None:
      continue
    function = (item.path, item.originalname)
    if function in seen:
      item.add_marker(pytest.mark.slow)
    seen.add(function)


def pytest_unconfigure(config):
  del config
  if _CACHE_OWNER:
    shutil.rmtree(os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)
