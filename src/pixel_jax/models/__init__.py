"""Networks of the paper, built from an experiment config by `get_model`."""

import ml_collections

from pixel_jax.models import multiscale
from pixel_jax.models.cores import CORES
from pixel_jax.models.multiscale import has_stages
from pixel_jax.models.network import AutoregressiveNetwork
from pixel_jax.models.network_config import DTYPES
from pixel_jax.models.network_config import NetworkConfig
from pixel_jax.models.wavefront import WAVEFRONT_CORES

MODEL_NAMES = tuple(CORES)


def pixel_rnn(core: str, **fields) -> AutoregressiveNetwork:
  """A PixelRNN with the given core ('row_lstm' or 'diagonal_bilstm'); `fields` are the
  other NetworkConfig fields."""
  return AutoregressiveNetwork(NetworkConfig(core=core, **fields))


def pixel_cnn(**fields) -> AutoregressiveNetwork:
  """A PixelCNN (15 blocks in the paper); `fields` are the other NetworkConfig fields."""
  return AutoregressiveNetwork(NetworkConfig(core='pixelcnn', **fields))


def get_model(config: ml_collections.ConfigDict):
  """Builds the network named by config.model.name.

  `model.apply(variables, images)` takes float32 images [B, H, W, C] holding integer levels
  and returns float32 logits [B, H, W, C, num_levels]. The config is assumed valid
  (pixel_jax.configs.validate).
  """
  if config.model.name == 'multiscale':
    return multiscale.get_multiscale_model(config)
  return AutoregressiveNetwork(NetworkConfig.from_config(config))


__all__ = [
  'AutoregressiveNetwork',
  'DTYPES',
  'MODEL_NAMES',
  'NetworkConfig',
  'get_model',
  'has_stages',
  'pixel_cnn',
  'pixel_rnn',
  'WAVEFRONT_CORES',
]
