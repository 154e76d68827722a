"""The network skeleton shared by PixelRNN and PixelCNN.

images -> scale to [-1, 1] -> kxk mask-A convolution to 2h features -> num_layers blocks of
the core (models/cores.py; optionally scanned) -> [sum of per-layer skip projections] ->
output head -> logits.

Class conditioning (cfg.num_classes = K > 0): the network takes labels [B] in [0, K) and
hands every block the one-hot class, broadcast over the positions, as (part of) its
conditioning map (`conditioning`; after the Multi-Scale PixelRNN's map when there is one).
Each block adds a learned projection of that map to every gate pre-activation
(layers.ConditionBias): with a one-hot class, a per-layer, per-class bias, as in the
conditional PixelCNN of van den Oord et al. (2016, "Conditional Image Generation with
PixelCNN Decoders"). It is the same at every position and reads no pixel, so causality is
unchanged; the cached sampler hands each block the map at the position it visits.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from pixel_jax.models import cores
from pixel_jax.models import layers
from pixel_jax.models import wavefront
from pixel_jax.models.network_config import NetworkConfig


class AutoregressiveNetwork(nn.Module):
  """Maps images [B, H, W, C] of integer levels to logits [B, H, W, C, num_levels].

  Attributes:
    cfg: the NetworkConfig (core, depth, widths, data shape, dtype, ...).
  """

  cfg: NetworkConfig

  # The data attributes every sampler and check reads.
  @property
  def image_size(self) -> int:
    return self.cfg.image_size

  @property
  def num_channels(self) -> int:
    return self.cfg.num_channels

  @property
  def num_levels(self) -> int:
    return self.cfg.num_levels

  @property
  def num_classes(self) -> int:
    return self.cfg.num_classes

  def setup(self):
    cfg = self.cfg
    self.input_conv = cores.input_layer(cfg)
    block = cores.block_class(cfg.core)
    if cfg.scan_layers:
      self.blocks = nn.scan(
        block,
        variable_axes={'params': 0},
        split_rngs={'params': True},
        in_axes=nn.broadcast,
        length=cfg.num_layers,
      )(cfg)
    else:
      self.blocks = [block(cfg, name=f'block_{i}') for i in range(cfg.num_layers)]
    self.head = layers.OutputHead(
      cfg.num_channels,
      cfg.num_levels,
      cfg.out_hidden_channels,
      cfg.out_hidden_layers,
      dtype=cfg.dtype,
    )

  def conditioning(
    self, cond_BxHxWxD: Optional[jnp.ndarray] = None, labels_B: Optional[jnp.ndarray] = None
  ) -> Optional[jnp.ndarray]:
    """The map every block reads: `cond` (e.g. the Multi-Scale PixelRNN's), then the
    one-hot class of `labels` broadcast over the positions, along the channels; None for an
    unconditional network without `cond`.

    Raises:
      ValueError: labels missing for a class-conditional network, or given to one that
        is not.
    """
    k = self.cfg.num_classes
    if k == 0:
      if labels_B is not None:
        raise ValueError(
          'labels were given to a network that is not class-conditional '
          '(config.model.num_classes=0).'
        )
      return cond_BxHxWxD
    if labels_B is None:
      raise ValueError(
        f'This network is class-conditional (config.model.num_classes={k}): '
        'give labels [B] of classes in [0, num_classes).'
      )
    labels_B = jnp.asarray(labels_B)
    if labels_B.ndim != 1:
      raise ValueError(f'labels must be [B] class indices; got shape {labels_B.shape}.')
    size = self.cfg.image_size
    one_hot = jax.nn.one_hot(labels_B, k, dtype=self.cfg.dtype)
    class_map = jnp.broadcast_to(one_hot[:, None, None, :], (one_hot.shape[0], size, size, k))
    if cond_BxHxWxD is None:
      return class_map
    return jnp.concatenate([cond_BxHxWxD, class_map.astype(cond_BxHxWxD.dtype)], axis=-1)

  def __call__(
    self,
    images_BxHxWxC: jnp.ndarray,
    cond_BxHxWxD: Optional[jnp.ndarray] = None,
    labels_B: Optional[jnp.ndarray] = None,
  ) -> jnp.ndarray:
    cfg = self.cfg
    layers.check_images(images_BxHxWxC, cfg.image_size, cfg.num_channels)
    cond_BxHxWxD = self.conditioning(cond_BxHxWxD, labels_B)
    x = self.input_conv(layers.scale_input(images_BxHxWxC, cfg.num_levels))
    if cfg.wavefront and not self.is_initializing():
      # The same blocks on the same parameters, all in one scan (models/wavefront.py);
      # `init` takes the layer-by-layer path below, which creates the parameters.
      unbound = cores.block_class(cfg.core)(cfg, parent=None)
      params_L = wavefront.stacked_block_params(cfg, self.variables['params'])
      x, skip_sum = wavefront.run(cfg, unbound, params_L, x, cond_BxHxWxD)
    elif cfg.scan_layers:
      x, skips = self.blocks(x, cond_BxHxWxD)
      skip_sum = skips.sum(axis=0) if cfg.skip else None
    else:
      skips = []
      for block in self.blocks:
        x, s = block(x, cond_BxHxWxD)
        skips.append(s)
      skip_sum = sum(skips) if cfg.skip else None
    return self.head(skip_sum if cfg.skip else cores.readout(cfg.core, x))

  # One position at a time (the cached sampler).

  def input_at(self, window_NxIxJxC: jnp.ndarray) -> jnp.ndarray:
    """The input convolution at one position from the top of its window of scaled levels
    (rows r - k//2 .. r, columns c - k//2 .. c + k//2): [N, 2h]."""
    return self.input_conv.at_window(window_NxIxJxC)

  def logits_at(self, x_NxF: jnp.ndarray) -> jnp.ndarray:
    """The output head at one position, from the skip sum or the stream: logits
    [N, C, K]."""
    return self.head(x_NxF if self.cfg.skip else cores.readout(self.cfg.core, x_NxF))


def block_variables(cfg: NetworkConfig, variables: Any) -> list[Any]:
  """Each block's variables, whether the blocks were scanned (stacked) or unrolled: what
  `cores.block_class(cfg.core)(cfg).apply` takes."""
  params = variables['params']
  if cfg.scan_layers:
    return [
      {'params': jax.tree_util.tree_map(lambda a, i=i: a[i], params['blocks'])}
      for i in range(cfg.num_layers)
    ]
  return [{'params': params[f'block_{i}']} for i in range(cfg.num_layers)]


__all__ = ['AutoregressiveNetwork', 'block_variables']
