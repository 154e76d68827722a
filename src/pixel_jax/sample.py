"""Samples and completions from a trained run, as PNG grids and .npy arrays.

  python -m pixel_jax.sample --workdir=/tmp/run1 --num_samples=16
  python -m pixel_jax.sample --workdir=/tmp/run1 --complete=test --num_samples=8
  python -m pixel_jax.sample --workdir=/tmp/run1 --complete=/path/images.npy --keep_rows=10
  python -m pixel_jax.sample --workdir=gs://bucket/run1 --complete=gs://bucket/pngs/
  python -m pixel_jax.sample --workdir=/tmp/cond --labels=0,1,2,3,4,5,6,7,8,9 --num_samples=8

A class-conditional run (config.model.num_classes > 0) draws --num_samples images of each
class in --labels (default: every class), one row of the grid per class, and completes each
image given its class: a split's own labels; for a .npy or PNG folder, --labels (one class
for all images, or one each).

Writes into --output_dir (default: WORKDIR/sampled):
  samples.png / samples.npy          samples (uint8 levels [N, H, W, C]); class-conditional:
                                     a classes x samples grid, the classes in labels.npy;
  stages.png                         multi-scale models: each small image | its full image;
  completion.png / completion.npy    with --complete: rows occluded | completions | original;
                                     the .npy holds the completions, originals.npy the
                                     images they started from.
The model is rebuilt from WORKDIR/config.json and the checkpoint restored by
runs.restore_run (the best by validation loss, else the latest).

This is the `sample` command; the samplers it calls are the library pixel_jax.sampling.
"""

import os
import sys
import time
from typing import Optional

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
import numpy as np

from pixel_jax import checkpointing
from pixel_jax import console
from pixel_jax import image_files
from pixel_jax import image_grid
from pixel_jax import models
from pixel_jax import runs
from pixel_jax import sampling
from pixel_jax import storage
from pixel_jax.models import multiscale

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines this tool's flags. Called only when run as a program, so the library
  modules main, evaluate and sample can be imported together (shared flag names)."""
  flags.DEFINE_string('workdir', None, 'The training run to sample from.')
  flags.DEFINE_integer('num_samples', None, 'Images to draw (default: config.sample.num_samples).')
  flags.DEFINE_enum(
    'method', None, list(sampling.METHODS), 'Sampler (default: config.sample.method).'
  )
  flags.DEFINE_float(
    'temperature', None, 'Softmax temperature; 0 is greedy (default: config.sample.temperature).'
  )
  flags.DEFINE_string(
    'complete',
    None,
    "Also complete images: a split name of the run's "
    'dataset (test, validation, ...), a .npy file of integer levels '
    '[N, H, W, C] (or [N, H, W] for one channel) or a folder of PNGs, local or a URI '
    '(gs://bucket/images.npy).',
  )
  flags.DEFINE_integer(
    'keep_rows',
    None,
    'Rows kept from the top of each image to complete (default: half the height).',
  )
  flags.DEFINE_string(
    'checkpoint', 'best', '"best" (falls back to latest), "latest", or a step number.'
  )
  flags.DEFINE_integer('seed', 0, 'Sampling seed.')
  flags.DEFINE_string('output_dir', None, 'Where to write (default: WORKDIR/sampled).')
  flags.DEFINE_integer('scale', 2, 'Nearest-neighbour upscaling of the PNG grids.')
  flags.DEFINE_string(
    'labels',
    None,
    'Class-conditional runs: comma-separated classes, e.g. '
    '0,1,2,3,4,5,6,7,8,9 (default: every class); --num_samples images of '
    'each. With --complete of a .npy or PNG folder: the class of every '
    'image (one label) or of each (a split uses its own labels).',
  )
  flags.mark_flags_as_required(['workdir'])


OCCLUDED_RGB = (60, 60, 150)  # Unknown pixels in the occluded row (the padding is grey).


class SampleError(RuntimeError):
  """An input to complete or a flag that cannot be used; reported as one line."""


def load_images_to_complete(
  config: ml_collections.ConfigDict, source: str, count: int
) -> tuple[np.ndarray, Optional[np.ndarray]]:
  """The first `count` images of a split name, a .npy file or a folder of PNGs (uint8
  [N, H, W, C]), and for a split of a class-conditional config their labels (else None).

  The files may be local or in cloud storage (gs://...)."""
  d = config.data
  if image_files.names_image_files(source):
    try:
      images, _ = image_files.load_images(source, config)
    except image_files.ImageFileError as e:
      raise SampleError(f'--complete: {e}') from e
    return images[:count], None
  try:
    data = runs.open_data(config)
    # [:count] first: a streamed split (config.data.streaming) then reads only these.
    images = np.asarray(runs.load_split(data, source)[:count])
    labels = runs.load_labels(data, source)
  except Exception as e:  # pylint: disable=broad-except
    raise SampleError(f'Cannot load split {source!r} of {d.name}: {e}') from e
  if len(images) == 0:
    raise SampleError(f'--complete={source} holds no images.')
  return images.astype(np.uint8), None if labels is None else labels[:count]


def parse_labels(text: Optional[str], num_classes: int) -> Optional[np.ndarray]:
  """'0,1,9' -> int32 [3], checked against the model's classes; None when not given."""
  if text is None:
    return None
  if not num_classes:
    raise SampleError(
      '--labels is for class-conditional runs; this run has config.model.num_classes=0.'
    )
  try:
    labels = np.array([int(t) for t in text.split(',')], np.int32)
  except ValueError:
    raise SampleError(f'--labels={text!r} must be comma-separated integers, e.g. 0,1,2.') from None
  if labels.min() < 0 or labels.max() >= num_classes:
    raise SampleError(f'--labels={text!r}: classes must lie in [0, {num_classes}).')
  return labels


def completion_grid(
  occluded_mask: np.ndarray, completions: np.ndarray, originals: np.ndarray, num_levels: int
) -> np.ndarray:
  """Three rows of N images: occluded input | completions | originals, uint8 RGB."""
  n, h, w, _ = originals.shape
  shown = np.where(occluded_mask, originals, 0)
  grid = image_grid.make_grid(
    np.concatenate([shown, completions, originals]), num_levels, ncols=n, padding=1
  )
  unknown = ~np.all(occluded_mask, axis=-1)  # [N, H, W]: pixels not fully known.
  for i in range(n):
    top, left = 1, 1 + i * (w + 1)
    grid[top : top + h, left : left + w][unknown[i]] = OCCLUDED_RGB
  return grid


def run_sampling(
  workdir: str,
  num_samples: Optional[int] = None,
  method: Optional[str] = None,
  temperature: Optional[float] = None,
  complete: Optional[str] = None,
  keep_rows: Optional[int] = None,
  checkpoint: str = 'best',
  seed: int = 0,
  output_dir: Optional[str] = None,
  scale: int = 2,
  labels: Optional[str] = None,
) -> dict[str, str]:
  """Restores `workdir`, samples (and completes), writes the files; returns their paths.

  num_samples, method and temperature override the run's config.sample (None keeps it).
  `labels` ('0,1,...'): the classes of a class-conditional run (module docstring).
  """
  overrides = {
    field: value
    for field, value in (
      ('num_samples', num_samples),
      ('method', method),
      ('temperature', temperature),
    )
    if value is not None
  }
  config = None
  if overrides:  # Validated with the rest of the config by restore_run.
    config = runs.load_config(workdir)
    config.sample.update(overrides)
  run = runs.restore_run(workdir, checkpoint, config)
  config, model, step = run.config, run.model, run.step
  # Sampling is sequential per image: one device, not a replicated copy on every device.
  params = jax.device_put(jax.device_get(run.state.params), jax.devices()[0])
  num_samples, method = config.sample.num_samples, config.sample.method
  temperature = config.sample.temperature
  k = config.model.num_classes
  classes = parse_labels(labels, k)
  if k and classes is None:
    classes = np.arange(k, dtype=np.int32)
  # Class-conditional: num_samples of each class, class by class.
  sample_labels = None if classes is None else np.repeat(classes, num_samples)
  total = num_samples if sample_labels is None else len(sample_labels)
  if complete:  # Inputs checked before anything is drawn.
    originals, complete_labels = load_images_to_complete(config, complete, num_samples)
    if k and complete_labels is None:  # Files: the classes come from --labels.
      given = parse_labels(labels, k)
      if given is None:
        raise SampleError(
          f'--complete={complete} has no labels and the run is '
          'class-conditional: give --labels (one class, or one per image).'
        )
      if len(given) not in (1, len(originals)):
        raise SampleError(
          f'--labels gives {len(given)} classes for {len(originals)} '
          'images to complete: give one, or one per image.'
        )
      complete_labels = np.resize(given, len(originals))
    size = config.data.image_size
    keep = size // 2 if keep_rows is None else keep_rows
    if not 0 <= keep <= size:
      raise SampleError(f'--keep_rows={keep} must lie in [0, {size}].')
  output_dir = output_dir or os.path.join(workdir, 'sampled')
  variables = {'params': params}
  levels = config.data.num_levels
  rng = jax.random.key(seed)
  written = {}
  start = time.time()
  images = np.asarray(
    sampling.sample(
      model, variables, rng, total, method=method, temperature=temperature, labels=sample_labels
    )
  )
  logging.info(
    '%d samples (%s, T=%g) from step %d in %.1fs.',
    total,
    method,
    temperature,
    step,
    time.time() - start,
  )
  written['samples.npy'] = storage.save_npy(os.path.join(output_dir, 'samples.npy'), images)
  if sample_labels is not None:
    written['labels.npy'] = storage.save_npy(os.path.join(output_dir, 'labels.npy'), sample_labels)
  grid = image_grid.make_grid(images, levels, ncols=num_samples if classes is not None else 0)
  written['samples.png'] = image_grid.save_png(
    os.path.join(output_dir, 'samples.png'), grid, scale=scale
  )
  if models.has_stages(model):  # The small image beside its full one.
    written['stages.png'] = image_grid.save_png(
      os.path.join(output_dir, 'stages.png'),
      image_grid.stages_grid(multiscale.subsample(images, model.factor), images, levels),
      scale=scale,
    )
  if complete:
    mask = np.zeros(originals.shape, bool)
    mask[:, :keep] = True
    completions = np.asarray(
      sampling.sample(
        model,
        variables,
        jax.random.fold_in(rng, 1),
        len(originals),
        method=method,
        temperature=temperature,
        prefix=originals,
        prefix_mask=mask,
        labels=complete_labels if k else None,
      )
    )
    for name, array in (('completion.npy', completions), ('originals.npy', originals)):
      written[name] = storage.save_npy(os.path.join(output_dir, name), array)
    written['completion.png'] = image_grid.save_png(
      os.path.join(output_dir, 'completion.png'),
      completion_grid(mask, completions, originals, levels),
      scale=scale,
    )
  return written


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Too many command-line arguments: {argv[1:]}')
  checkpointing.quiet_orbax_logs()
  console.quiet_library_logs()
  try:
    written = run_sampling(
      FLAGS.workdir,
      FLAGS.num_samples,
      FLAGS.method,
      FLAGS.temperature,
      FLAGS.complete,
      FLAGS.keep_rows,
      FLAGS.checkpoint,
      FLAGS.seed,
      FLAGS.output_dir,
      FLAGS.scale,
      FLAGS.labels,
    )
  except (SampleError, *runs.USER_ERRORS) as e:
    logging.error('%s', e)
    sys.exit(f'pixel_jax.sample: error: {e}')
  for path in written.values():
    print(path, flush=True)


if __name__ == '__main__':
  console.run_tool(main, define_flags)
