"""Networks of the paper, built from an experiment config by `get_model`."""

import jax.numpy as jnp
import ml_collections

from pixel_jax.models.network import AutoregressiveNetwork
from pixel_jax.models.pixelcnn import pixel_cnn
from pixel_jax.models.pixelrnn import pixel_rnn

MODEL_NAMES = ('row_lstm', 'diagonal_bilstm', 'pixelcnn')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def network_kwargs(config: ml_collections.ConfigDict, num_layers: int | None = None,
                   image_size: int | None = None) -> dict:
  """The AutoregressiveNetwork attributes shared by every model, from the config."""
  m, d = config.model, config.data
  return dict(num_layers=num_layers or m.num_layers, hidden_channels=m.hidden_channels,
              num_channels=d.num_channels, num_levels=d.num_levels,
              image_size=image_size or d.image_size,
              out_hidden_channels=m.out_hidden_channels,
              first_kernel_size=m.first_kernel_size, skip=m.skip,
              scan_layers=m.scan_layers, dtype=DTYPES[m.dtype])


def get_model(config: ml_collections.ConfigDict):
  """Builds the network named by config.model.name.

  `model.apply(variables, images)` takes float32 images [B, H, W, C] holding integer levels
  and returns float32 logits [B, H, W, C, num_levels]. The config is assumed valid
  (pixel_jax.configs.validate).
  """
  name = config.model.name
  if name == 'multiscale':
    from pixel_jax.models import multiscale  # pylint: disable=g-import-not-at-top
    return multiscale.get_multiscale_model(config)
  kwargs = network_kwargs(config)
  if name == 'pixelcnn':
    return pixel_cnn(residual=config.model.residual, **kwargs)
  return pixel_rnn(name, residual=config.model.residual, **kwargs)


__all__ = ['AutoregressiveNetwork', 'MODEL_NAMES', 'get_model', 'pixel_cnn', 'pixel_rnn']
