"""Shared test setup: 8 fake CPU devices and strict rank promotion, before JAX starts."""

import os

# Must be set before jax initialises its backends so multi-device tests see 8 CPU devices.
os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()

import jax  # pylint: disable=g-import-not-at-top

# Implicit rank promotion hides shape bugs (e.g. [B] + [B, 1] -> [B, B]); make it an error.
jax.config.update('jax_numpy_rank_promotion', 'raise')


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: spawns a subprocess (left out by make test-fast)')
