"""Networks of the paper, built from an experiment config by `get_model`."""

import jax.numpy as jnp
import ml_collections

from pixel_jax.models.network import AutoregressiveNetwork
from pixel_jax.models.pixelcnn import pixel_cnn
from pixel_jax.models.pixelrnn import pixel_rnn

MODEL_NAMES = ('row_lstm', 'diagonal_bilstm', 'pixelcnn')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises one ValueError naming the offending field when the model config is unusable."""
  m, d = config.model, config.data
  names = MODEL_NAMES + ('multiscale',)
  if m.name not in names:
    raise ValueError(f'config.model.name={m.name!r} is unknown; use one of {names}.')
  checks = [
      ('config.model.num_layers', m.num_layers, 1),
      ('config.model.hidden_channels', m.hidden_channels, 1),
      ('config.model.out_hidden_channels', m.out_hidden_channels, 1),
      ('config.data.image_size', d.image_size, 1),
      ('config.data.num_channels', d.num_channels, 1),
      ('config.data.num_levels', d.num_levels, 2),
  ]
  for field, value, least in checks:
    if not isinstance(value, int) or value < least:
      raise ValueError(f'{field}={value!r} must be an integer >= {least}.')
  if m.first_kernel_size < 1 or m.first_kernel_size % 2 == 0:
    raise ValueError(f'config.model.first_kernel_size={m.first_kernel_size} must be odd.')
  if m.dtype not in DTYPES:
    raise ValueError(f'config.model.dtype={m.dtype!r} must be one of {tuple(DTYPES)}.')
  if m.name == 'multiscale':
    from pixel_jax.models import multiscale  # pylint: disable=g-import-not-at-top
    multiscale.validate_config(config)
  groups = d.num_channels
  for field, width in (('config.model.hidden_channels', m.hidden_channels),
                       ('config.model.out_hidden_channels', m.out_hidden_channels)):
    if width < groups:
      raise ValueError(f'{field}={width} must be >= config.data.num_channels={groups} so '
                       'every colour channel owns at least one feature.')


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
  and returns float32 logits [B, H, W, C, num_levels].
  """
  validate_config(config)
  name = config.model.name
  if name == 'multiscale':
    from pixel_jax.models import multiscale  # pylint: disable=g-import-not-at-top
    return multiscale.get_multiscale_model(config)
  kwargs = network_kwargs(config)
  if name == 'pixelcnn':
    return pixel_cnn(residual=config.model.residual, **kwargs)
  return pixel_rnn(name, residual=config.model.residual, **kwargs)


__all__ = ['AutoregressiveNetwork', 'MODEL_NAMES', 'get_model', 'pixel_cnn', 'pixel_rnn',
           'validate_config']
