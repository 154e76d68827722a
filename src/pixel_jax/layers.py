"""The public layer API, for use inside any Flax model.

  from pixel_jax import layers
  h = layers.RowLSTM(hidden=32, num_groups=3)(x)        # x: [B, H, W, F]
  h = layers.DiagonalBiLSTM(hidden=32, num_groups=3)(x)

Only names: every layer is defined under pixel_jax.models (the masked convolution, LSTM
cell and output head in models/layers.py, each core in its own module), and this module
re-exports the ones that are a stable interface for users.
"""

from pixel_jax.models.causal import shift_down
from pixel_jax.models.causal import skew
from pixel_jax.models.causal import unskew
from pixel_jax.models.diagonal_bilstm import DiagonalBiLSTM
from pixel_jax.models.layers import lstm_cell
from pixel_jax.models.layers import MaskedConv2D
from pixel_jax.models.layers import OutputHead
from pixel_jax.models.layers import scale_input
from pixel_jax.models.masks import channel_groups
from pixel_jax.models.masks import conv_mask
from pixel_jax.models.network import AutoregressiveNetwork
from pixel_jax.models.pixelcnn import ConvBlock
from pixel_jax.models.pixelrnn import RecurrentBlock
from pixel_jax.models.row_lstm import RowLSTM

__all__ = [
  'AutoregressiveNetwork',
  'ConvBlock',
  'DiagonalBiLSTM',
  'MaskedConv2D',
  'OutputHead',
  'RecurrentBlock',
  'RowLSTM',
  'channel_groups',
  'conv_mask',
  'lstm_cell',
  'scale_input',
  'shift_down',
  'skew',
  'unskew',
]
