"""Exact discrete likelihood (docs/design.md section 1)."""

import math
from typing import Union

import jax
import jax.numpy as jnp


def log_prob_per_subpixel(
  logits_BxHxWxCxK: jnp.ndarray, images_BxHxWxC: jnp.ndarray
) -> jnp.ndarray:
  """log p(x_i | x_<i) of every sub-pixel, [B, H, W, C], from logits and integer levels.

  log_softmax subtracts the max before exponentiating, so this is stable for any logits.
  """
  logp = jax.nn.log_softmax(logits_BxHxWxCxK.astype(jnp.float32), axis=-1)
  index = images_BxHxWxC.astype(jnp.int32)[..., None]
  return jnp.take_along_axis(logp, index, axis=-1)[..., 0]


def nll_per_image(logits_BxHxWxCxK: jnp.ndarray, images_BxHxWxC: jnp.ndarray) -> jnp.ndarray:
  """Exact negative log-likelihood of each image in nats, [B]: summed over sub-pixels."""
  return -log_prob_per_subpixel(logits_BxHxWxCxK, images_BxHxWxC).sum(axis=(1, 2, 3))


def nll_per_pixel(logits_BxHxWxCxK: jnp.ndarray, images_BxHxWxC: jnp.ndarray) -> jnp.ndarray:
  """NLL of each pixel in nats, [B, H, W]: its sub-pixels' NLLs summed over the channels.

  Summed over H and W it is nll_per_image; a pixel's share of the image's code length.
  """
  return -log_prob_per_subpixel(logits_BxHxWxCxK, images_BxHxWxC).sum(axis=-1)


def bits_per_dim(nll_nats: Union[float, jnp.ndarray], num_dims: int) -> Union[float, jnp.ndarray]:
  """NLL in nats per image -> bits per sub-pixel: nats / (H * W * C * ln 2)."""
  return nll_nats / (num_dims * math.log(2.0))
