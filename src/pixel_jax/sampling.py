"""The sampling library: images drawn sub-pixel by sub-pixel (docs/design.md section 8).

Two samplers with one interface:
* 'naive': one full forward pass (model.apply) per sub-pixel, H * W * C passes. The
  reference: it is the model's own definition of p(x_i | x_<i).
* 'cached': per-layer caches (sampling_cache.py) so a sub-pixel costs one position of every
  layer, not a whole image.

Both are a single jitted function built from lax.fori_loop (no Python loop over pixels),
and both draw the randomness identically: sub-pixel number s = (r * W + c) * C + ch uses
the key fold_in(rng, s) and the Gumbel-max trick, argmax(logits + T * gumbel), which is
argmax(logits / T + gumbel) for T > 0 and greedy decoding for T = 0. So for the same key
the two samplers return the same images (up to float summation order deciding a near-tie,
which has probability ~1e-6 per sub-pixel).

Completion: `prefix` images with a boolean `prefix_mask` of known sub-pixels. Known
sub-pixels are copied into the output and conditioned on; only the others are sampled.

Conditioning (the full-image stage of the Multi-Scale PixelRNN): `cond`, a map [N, H, W, D]
fully known before sampling, is passed to every layer (model.apply(variables, images, cond));
the caches add its per-layer 1x1 projection at each position. A class-conditional network
(num_classes > 0) draws image i of class labels[i]: the naive sampler passes the labels
to model.apply, the cached one the network's conditioning map of them
(AutoregressiveNetwork.conditioning), so both feed every layer the same one-hot class.
A model with stages (models.has_stages: the Multi-Scale PixelRNN) is drawn stage by stage,
each through the single-network samplers (`_sample_stages`).

Usage:
  images = sampling.sample(model, variables, jax.random.key(0), num_samples=16)

The command line that samples a trained run and writes PNG grids is pixel_jax.sample.
"""

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from pixel_jax import models
from pixel_jax import sampling_cache
from pixel_jax.models import multiscale

METHODS = ('cached', 'naive')


def _choose(logits_NxK: jnp.ndarray, key: jax.Array, temperature: jnp.ndarray) -> jnp.ndarray:
  """Gumbel-max draw from softmax(logits / T): argmax(logits + T * g), int32 [N].

  Multiplying logits / T + g by T > 0 keeps the argmax and makes T = 0 exactly greedy.
  """
  gumbel = jax.random.gumbel(key, logits_NxK.shape, jnp.float32)
  return jnp.argmax(logits_NxK.astype(jnp.float32) + temperature * gumbel, axis=-1).astype(
    jnp.int32
  )


def _subpixel_key(rng: jax.Array, r, c, ch, width: int, channels: int) -> jax.Array:
  """The key of sub-pixel (r, c, ch): independent of the sampler and of the visit order."""
  return jax.random.fold_in(rng, (r * width + c) * channels + ch)


def _commit(
  images: jnp.ndarray, start: jnp.ndarray, known: jnp.ndarray, r, c, ch, drawn_N: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Writes the drawn levels at (r, c, ch) except where the sub-pixel is known.

  Known values are read from `start`, never from `images`: reading a buffer and then
  updating it in place in the same step makes XLA copy the whole buffer every step.
  """
  value = jnp.where(known[:, r, c, ch], start[:, r, c, ch], drawn_N)
  return images.at[:, r, c, ch].set(value), value


def _sample_naive(
  model,
  variables,
  rng,
  images,
  known,
  temperature,
  num_subpixels: Optional[int] = None,
  cond=None,
  labels=None,
):
  """The reference: a full forward pass for every sub-pixel, in raster then R, G, B order.

  `num_subpixels` stops after the first that many sub-pixels (benchmarks time a prefix).
  """
  _, height, width, channels = images.shape
  start = images
  total = height * width * channels if num_subpixels is None else num_subpixels

  extra = () if cond is None else (cond,)
  kwargs = {} if labels is None else {'labels_B': labels}

  def body(s, images):
    r, c, ch = s // (width * channels), (s // channels) % width, s % channels
    logits = model.apply(variables, images.astype(jnp.float32), *extra, **kwargs)  # [N, H, W, C, K]
    drawn = _choose(logits[:, r, c, ch], _subpixel_key(rng, r, c, ch, width, channels), temperature)
    return _commit(images, start, known, r, c, ch, drawn)[0]

  return jax.lax.fori_loop(0, total, body, images)


def _run_cached(
  model, variables, rng, images, known, temperature, keep_logits=False, cond=None, labels=None
):
  """Rows, then columns, then channels; each visit costs one position of every layer.

  With keep_logits, also returns the logits [N, H, W, C, K] each visit used (with every
  sub-pixel known this is teacher forcing through the caches, for tests).
  """
  if labels is not None:  # The class joins the conditioning map every layer reads.
    cond = model.apply(variables, cond, labels, method=models.AutoregressiveNetwork.conditioning)
  net = sampling_cache.CachedNetwork(model, variables, cond)
  n, height, width, channels = images.shape
  num_classes = net.cfg.num_levels
  all_logits = jnp.zeros(
    (n, height, width, channels, num_classes) if keep_logits else (), jnp.float32
  )

  def subpixel(r, c, ch, carry):
    images, cache, _, all_logits = carry
    logits, cache, pending = net.position(cache, r, c)
    logits = jax.lax.dynamic_index_in_dim(logits, ch, axis=1, keepdims=False)
    drawn = _choose(logits, _subpixel_key(rng, r, c, ch, width, channels), temperature)
    images, value = _commit(images, start, known, r, c, ch, drawn)
    if keep_logits:
      all_logits = all_logits.at[:, r, c, ch].set(logits)
    return images, net.set_subpixel(cache, r, c, ch, value), pending, all_logits

  def pixel(r, c, carry):
    images, cache, all_logits = carry
    # The pending state's structure, for the loop carry; its value is set on every visit.
    pending = jax.eval_shape(lambda cache: net.position(cache, r, c)[2], cache)
    pending = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), pending)
    images, cache, pending, all_logits = jax.lax.fori_loop(
      0, channels, lambda ch, carry: subpixel(r, c, ch, carry), (images, cache, pending, all_logits)
    )
    return images, net.end_pixel(cache, pending), all_logits

  def row(r, carry):
    images, cache, all_logits = jax.lax.fori_loop(
      0, width, lambda c, carry: pixel(r, c, carry), carry
    )
    return images, net.end_row(cache, r), all_logits

  start = images
  images, _, all_logits = jax.lax.fori_loop(0, height, row, (images, net.init(images), all_logits))
  return images, all_logits


def _sample_cached(model, variables, rng, images, known, temperature, cond=None, labels=None):
  return _run_cached(model, variables, rng, images, known, temperature, cond=cond, labels=labels)[0]


@functools.partial(jax.jit, static_argnames=('model',))
def cached_logits(
  model: Any,
  variables: Any,
  images_NxHxWxC: jnp.ndarray,
  cond: Optional[jnp.ndarray] = None,
  labels: Optional[jnp.ndarray] = None,
) -> jnp.ndarray:
  """Logits [N, H, W, C, K] of given images computed through the sampling caches.

  Every sub-pixel is known, so the cached sampler only conditions; the result must equal
  model.apply(variables, images, cond, labels) up to float rounding. Used to test the
  caches.
  """
  images = images_NxHxWxC.astype(jnp.int32)
  return _run_cached(
    model,
    variables,
    jax.random.key(0),
    images,
    jnp.ones(images.shape, bool),
    jnp.float32(1.0),
    keep_logits=True,
    cond=cond,
    labels=labels,
  )[1]


@functools.partial(jax.jit, static_argnames=('model', 'method'))
def _sample_jit(model, method, variables, rng, images, known, temperature, cond=None, labels=None):
  fn = _sample_cached if method == 'cached' else _sample_naive
  return fn(model, variables, rng, images, known, temperature, cond=cond, labels=labels).astype(
    jnp.uint8
  )


def starting_images(
  model: Any, num_samples: int, prefix: Optional[Any] = None, prefix_mask: Optional[Any] = None
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(images int32 [N, H, W, C], known bool [N, H, W, C]) for `sample`; validates inputs.

  Unknown sub-pixels start at level 0; by the masks no logit depends on them before they
  are drawn, so the start value only has to match between the two samplers.
  """
  shape = (num_samples, model.image_size, model.image_size, model.num_channels)
  if prefix is None:
    if prefix_mask is not None:
      raise ValueError('prefix_mask was given without prefix.')
    return jnp.zeros(shape, jnp.int32), jnp.zeros(shape, bool)
  prefix = np.asarray(prefix)
  if prefix.shape != shape:
    raise ValueError(f'prefix has shape {prefix.shape}; expected [num_samples, H, W, C] = {shape}.')
  if prefix_mask is None:
    raise ValueError('prefix needs a prefix_mask saying which sub-pixels are known.')
  known = np.broadcast_to(np.asarray(prefix_mask, bool), shape)
  values = np.where(known, prefix, 0)
  if values.min() < 0 or values.max() >= model.num_levels:
    raise ValueError(
      f'Known prefix values must lie in [0, {model.num_levels}), got '
      f'[{values.min()}, {values.max()}].'
    )
  return jnp.asarray(values, jnp.int32), jnp.asarray(known)


def sample(
  model: Any,
  variables: Any,
  rng: jax.Array,
  num_samples: int,
  method: str = 'cached',
  temperature: float = 1.0,
  prefix: Optional[Any] = None,
  prefix_mask: Optional[Any] = None,
  cond: Optional[Any] = None,
  labels: Optional[Any] = None,
) -> jnp.ndarray:
  """Draws images from the model, or completes partially known ones.

  Args:
    model: the AutoregressiveNetwork of models.get_model ('naive' accepts any module whose
      apply maps images [N, H, W, C] to logits [N, H, W, C, K] and that has image_size,
      num_channels and num_levels attributes).
    variables: the model's variables ({'params': ...}).
    rng: a jax.random key; the same key gives the same images with either method.
    num_samples: N.
    method: 'cached' (fast) or 'naive' (the reference, one forward pass per sub-pixel).
    temperature: T >= 0; sub-pixels are drawn from softmax(logits / T); 0 is greedy.
    prefix: optional integer images [N, H, W, C] to complete.
    prefix_mask: booleans broadcastable to [N, H, W, C]: the known sub-pixels of `prefix`,
      copied unchanged into the output and conditioned on.
    cond: optional conditioning map [N, H, W, D] given to every layer (the conditional
      stage of models/multiscale.py); the model must have been built to take it.
    labels: integers [N] in [0, num_classes): the class of each image, required by (and
      only by) a class-conditional model (config.model.num_classes > 0).

  Returns:
    uint8 images [N, H, W, C] with levels in [0, num_levels).
  """
  if method not in METHODS:
    raise ValueError(f'method={method!r} is unknown; use one of {METHODS}.')
  if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
    raise ValueError(f'num_samples={num_samples!r} must be a positive integer.')
  if not temperature >= 0:
    raise ValueError(f'temperature={temperature!r} must be >= 0.')
  if model.num_levels > 256:
    raise ValueError(f'num_levels={model.num_levels} does not fit the uint8 output.')
  labels = check_labels(model, labels, int(num_samples))
  if models.has_stages(model):
    if cond is not None:
      raise ValueError('cond is for a single conditional network, not a multi-stage model.')
    return _sample_stages(
      model,
      variables,
      rng,
      int(num_samples),
      method=method,
      temperature=temperature,
      prefix=prefix,
      prefix_mask=prefix_mask,
      labels=labels,
    )
  if cond is not None:
    size = model.image_size
    if cond.ndim != 4 or tuple(cond.shape[:3]) != (num_samples, size, size):
      raise ValueError(
        f'cond has shape {tuple(cond.shape)}; expected [num_samples, H, W, D]'
        f' = [{num_samples}, {size}, {size}, D].'
      )
    cond = jnp.asarray(cond, jnp.float32)
  if method == 'cached':
    sampling_cache.network_config(model)  # Fails early, with one line, on other models.
  images, known = starting_images(model, int(num_samples), prefix, prefix_mask)
  return _sample_jit(
    model,
    method,
    variables,
    rng,
    images,
    known,
    jnp.asarray(temperature, jnp.float32),
    cond,
    labels,
  )


def check_labels(model: Any, labels: Optional[Any], num_samples: int) -> Optional[jnp.ndarray]:
  """Labels as int32 [num_samples] for a class-conditional model, None for another; one
  clear ValueError for missing, unexpected, misshapen or out-of-range labels."""
  k = getattr(model, 'num_classes', 0)
  if not k:
    if labels is not None:
      raise ValueError(
        'labels were given, but the model is not class-conditional (config.model.num_classes=0).'
      )
    return None
  if labels is None:
    raise ValueError(
      f'The model is class-conditional (num_classes={k}): give labels, one class per image.'
    )
  labels = np.asarray(labels)
  if labels.shape != (num_samples,) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(
      f'labels must be {num_samples} integer classes (one per image); got '
      f'{labels.dtype} of shape {labels.shape}.'
    )
  if labels.min() < 0 or labels.max() >= k:
    raise ValueError(f'labels must lie in [0, {k}); got [{labels.min()}, {labels.max()}].')
  return jnp.asarray(labels, jnp.int32)


def _sample_stages(
  model: Any,
  variables: Any,
  rng: jax.Array,
  num_samples: int,
  method: str,
  temperature: float,
  prefix: Optional[Any],
  prefix_mask: Optional[Any],
  labels: Optional[Any] = None,
) -> jnp.ndarray:
  """Two-stage ancestral sampling of a Multi-Scale PixelRNN (models/multiscale.py).

  The small image is drawn first (its key: fold_in(rng, 0)), then the full image given
  it (fold_in(rng, 1)) with the stride sub-pixels fixed to the small image, each stage
  with this module's samplers ('cached' or 'naive'). Completion: the small stage keeps the
  known sub-pixels at stride positions, the full stage all known sub-pixels.

  Returns:
    uint8 full images [N, n, n, C]; their small images are multiscale.subsample(images, k).
  """
  small_vars, full_vars = multiscale.stage_variables(variables)
  k = model.factor
  n, c = model.image_size, model.num_channels
  shape = (num_samples, n, n, c)
  stride = np.broadcast_to(multiscale.stride_mask(n, k)[None, :, :, None], shape)
  if prefix is None:
    small_prefix = small_known = None
    if prefix_mask is not None:
      raise ValueError('prefix_mask was given without prefix.')
    values, known = np.zeros(shape, np.int32), np.zeros(shape, bool)
  else:
    values, known = (
      np.asarray(a) for a in starting_images(model, num_samples, prefix, prefix_mask)
    )
    small_prefix, small_known = values[:, ::k, ::k], known[:, ::k, ::k]
    small_known = small_known if small_known.any() else None
    small_prefix = small_prefix if small_known is not None else None
  small = sample(
    model.small_network,
    small_vars,
    jax.random.fold_in(rng, 0),
    num_samples,
    method=method,
    temperature=temperature,
    prefix=small_prefix,
    prefix_mask=small_known,
    labels=labels,
  )
  cond = model.apply(variables, small, method=multiscale.MultiScalePixelRNN.condition)
  full_prefix = jnp.asarray(values).at[:, ::k, ::k].set(small.astype(jnp.int32))
  return sample(
    model.full_network,
    full_vars,
    jax.random.fold_in(rng, 1),
    num_samples,
    method=method,
    temperature=temperature,
    prefix=full_prefix,
    prefix_mask=known | stride,
    cond=cond,
    labels=labels,
  )


__all__ = ['METHODS', 'cached_logits', 'check_labels', 'sample', 'starting_images']
