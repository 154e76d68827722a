"""Exact negative log-likelihood of images under a model, and the units it is reported in.

The per-image NLL is in nats (summed over sub-pixels). Reports use the unit of the paper's
tables for the data: nats per image for binary data (num_levels == 2, MNIST) and bits per
sub-pixel (bits/dim) for 256 levels. The multi-scale model also reports each stage's share
of the NLL, as 'nll_nats_<stage>' entries that sum to the total.

Training (the periodic validation), `python -m pixel_jax.evaluate` and notebooks all use
`evaluate_images`, so every reported number comes from the same code. `pixel_nlls` gives
each image's per-pixel NLL map (the likelihood heatmaps of `evaluate --heatmaps`, and per
image summed, the scores of `python -m pixel_jax.score`).
"""

import functools
from typing import Any, Callable, Optional

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from pixel_jax import input_pipeline
from pixel_jax import losses
from pixel_jax import models
from pixel_jax import sharding

PART_PREFIX = 'nll_nats_'  # Names of the per-stage NLL entries: nll_nats_<stage>.


def nll_fn(
  params: Any, images_BxHxWxC: jax.Array, labels_B: Optional[jax.Array] = None, *, model: Any
) -> jax.Array:
  """Exact NLL of each image in nats, [B], from integer levels (uint8); for a
  class-conditional model (num_classes > 0) the conditional NLL given `labels_B`."""
  logits = model.apply({'params': params}, images_BxHxWxC.astype(jnp.float32), labels_B=labels_B)
  return losses.nll_per_image(logits, images_BxHxWxC)


def nll_parts_fn(
  params: Any, images_BxHxWxC: jax.Array, labels_B: Optional[jax.Array] = None, *, model: Any
) -> dict:
  """{'nll_nats': per-image NLL [B]}, plus 'nll_nats_<stage>' for a model with stages.

  The multi-scale model reports each stage's NLL (its parts sum to the total) from the same
  forward pass; every other model gives the total only.
  """
  if not models.has_stages(model):
    return {'nll_nats': nll_fn(params, images_BxHxWxC, labels_B, model=model)}
  parts = model.apply(
    {'params': params}, images_BxHxWxC.astype(jnp.float32), labels_B=labels_B, method='nll_parts'
  )
  return {
    'nll_nats': sum(parts.values()),
    **{PART_PREFIX + name: nll for name, nll in parts.items()},
  }


def eval_step(
  params: Any,
  images_BxHxWxC: jax.Array,
  mask_B: jax.Array,
  labels_B: Optional[jax.Array] = None,
  *,
  model: Any,
) -> tuple[dict, jax.Array]:
  """({name: sum of NLL nats over the valid images}, number of valid images) of a padded
  batch; the names are those of nll_parts_fn."""
  nlls = nll_parts_fn(params, images_BxHxWxC, labels_B, model=model)
  mask = mask_B.astype(jnp.float32)
  return {name: jnp.sum(nll * mask) for name, nll in nlls.items()}, jnp.sum(mask)


def make_eval_step(model: Any, mesh: jax.sharding.Mesh) -> Callable:
  """eval_step jitted for replicated parameters and batches split over the mesh."""
  rep, data = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  return jax.jit(
    functools.partial(eval_step, model=model),
    in_shardings=(rep, data, data, data),
    out_shardings=(rep, rep),
  )


def pixel_nll_fn(
  params: Any, images_BxHxWxC: jax.Array, labels_B: Optional[jax.Array] = None, *, model: Any
) -> jax.Array:
  """NLL of each pixel in nats, [B, H, W] (its sub-pixels summed), from integer levels
  (given `labels_B` for a class-conditional model).

  The multi-scale model's joint logits hold every sub-pixel's conditional of its own stage,
  so its map sums to the exact joint NLL as well.
  """
  logits = model.apply({'params': params}, images_BxHxWxC.astype(jnp.float32), labels_B=labels_B)
  return losses.nll_per_pixel(logits, images_BxHxWxC)


def make_pixel_nll_step(model: Any, mesh: jax.sharding.Mesh) -> Callable:
  """pixel_nll_fn jitted for replicated parameters and batches split over the mesh."""
  rep, data = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  return jax.jit(
    functools.partial(pixel_nll_fn, model=model), in_shardings=(rep, data, data), out_shardings=data
  )


def _with_labels(
  images: np.ndarray | input_pipeline.StreamingSplit,
  labels: Optional[np.ndarray],
  batch_size: int,
  rows: slice,
):
  """eval_batches of the images, each with the same rows of `labels` (None without)."""
  batches = input_pipeline.eval_batches(images, batch_size, rows=rows)
  if labels is None:
    return ((b, None) for b in batches)
  if len(labels) != len(images):
    raise ValueError(f'{len(labels)} labels for {len(images)} images.')
  label_batches = input_pipeline.eval_batches(np.asarray(labels, np.int32), batch_size, rows=rows)
  return zip(batches, (b for b, _ in label_batches))


def _global_labels(
  labels: Optional[np.ndarray], mesh: jax.sharding.Mesh, batch_size: int
) -> Optional[jax.Array]:
  return None if labels is None else sharding.to_global(labels, mesh, batch_size)


def _batch_size(config: ml_collections.ConfigDict, num_images: int, mesh: jax.sharding.Mesh) -> int:
  """config.eval.batch_size rounded up to fill the mesh, and no larger than needed."""
  n_dev = mesh.devices.size
  batch_size = -(-config.eval.batch_size // n_dev) * n_dev
  return min(batch_size, -(-num_images // n_dev) * n_dev)


def pixel_nlls(
  config: ml_collections.ConfigDict,
  model: Any,
  params: Any,
  images: np.ndarray | input_pipeline.StreamingSplit,
  mesh: jax.sharding.Mesh,
  step_fn: Optional[Callable] = None,
  labels: Optional[np.ndarray] = None,
) -> np.ndarray:
  """Per-pixel NLL maps in nats, float32 [N, H, W], of every image (no max_examples cap).

  Each map sums (over H and W) to the image's exact NLL; in bits (/ ln 2) it is the
  likelihood heatmap. Batches of config.eval.batch_size, split over `mesh`; `step_fn`:
  make_pixel_nll_step(model, mesh), when the caller keeps one compiled step; `labels`
  int [N]: each image's class, for a class-conditional model.
  """
  if len(images) == 0:
    raise ValueError('No images to score.')
  batch_size = _batch_size(config, len(images), mesh)
  if step_fn is None:
    step_fn = make_pixel_nll_step(model, mesh)
  rows = sharding.local_slice(batch_size, mesh)
  maps = []
  for (batch, mask), batch_labels in _with_labels(images, labels, batch_size, rows):
    out = step_fn(
      params,
      sharding.to_global(batch, mesh, batch_size),
      _global_labels(batch_labels, mesh, batch_size),
    )
    valid = multihost_utils.process_allgather(
      sharding.to_global(mask, mesh, batch_size), tiled=True
    )
    maps.append(np.asarray(multihost_utils.process_allgather(out, tiled=True))[valid])
  return np.concatenate(maps).astype(np.float32)


def loss_unit(config: ml_collections.ConfigDict) -> str:
  """'nats' (per image) for binary data, 'bits/dim' for 256 levels."""
  return 'nats' if config.data.num_levels == 2 else 'bits/dim'


def report_loss(nll_nats: float, config: ml_collections.ConfigDict) -> float:
  """nats/image -> the unit the paper reports for this data (loss_unit)."""
  if config.data.num_levels == 2:
    return float(nll_nats)
  d = config.data
  return float(losses.bits_per_dim(nll_nats, d.image_size * d.image_size * d.num_channels))


def evaluate_images(
  config: ml_collections.ConfigDict,
  model: Any,
  params: Any,
  images: np.ndarray | input_pipeline.StreamingSplit,
  mesh: jax.sharding.Mesh,
  step_fn: Optional[Callable] = None,
  labels: Optional[np.ndarray] = None,
) -> dict:
  """Whole-split NLL of `images` (uint8 levels [N, H, W, C]); eval.max_examples caps N.

  For a class-conditional model, `labels` (int [N], each image's class) are required and
  the NLL is the conditional NLL -log p(x | class).

  Args:
    config: the run's config (data shape, eval.batch_size, eval.max_examples).
    model: the network; params: its parameters, replicated on `mesh`.
    images: the split to evaluate.
    mesh: the ('data',) mesh the batches are split over.
    step_fn: make_eval_step(model, mesh), when the caller keeps one compiled step.

  Returns:
    {'nll_nats', 'loss' (in loss_unit), 'bits_per_dim', 'num_examples'}, plus each
    stage's 'nll_nats_<stage>' for the multi-scale model.
  """
  if config.eval.max_examples:
    images = images[: config.eval.max_examples]
    labels = None if labels is None else labels[: config.eval.max_examples]
  batch_size = _batch_size(config, len(images), mesh)
  if step_fn is None:
    step_fn = make_eval_step(model, mesh)
  totals: dict[str, float] = {}
  count = 0.0
  # Each process reads (and feeds) only its own rows of every batch.
  rows = sharding.local_slice(batch_size, mesh)
  for (batch, mask), batch_labels in _with_labels(images, labels, batch_size, rows):
    sums, c = step_fn(
      params,
      sharding.to_global(batch, mesh, batch_size),
      sharding.to_global(mask, mesh, batch_size),
      _global_labels(batch_labels, mesh, batch_size),
    )
    for name, s in sums.items():
      totals[name] = totals.get(name, 0.0) + float(s)
    count += float(c)
  if count == 0:
    raise ValueError('The evaluation split is empty.')
  d = config.data
  nll = totals.pop('nll_nats') / count
  return {
    'nll_nats': nll,
    'loss': report_loss(nll, config),
    'bits_per_dim': float(losses.bits_per_dim(nll, d.image_size * d.image_size * d.num_channels)),
    'num_examples': int(count),
    **{name: t / count for name, t in totals.items()},
  }


def stage_nlls(result: dict, prefix: str = '') -> dict:
  """The per-stage 'nll_nats_<stage>' entries of an evaluate_images result, prefixed."""
  return {prefix + k: v for k, v in result.items() if k.startswith(PART_PREFIX)}
