"""Samples and completions from a trained run, as PNG grids and .npy arrays.

  python -m pixel_jax.sample --workdir=/tmp/run1 --num_samples=16
  python -m pixel_jax.sample --workdir=/tmp/run1 --complete=test --num_samples=8
  python -m pixel_jax.sample --workdir=/tmp/run1 --complete=/path/images.npy --keep_rows=10

Writes into --output_dir (default: WORKDIR/sampled):
  samples.png / samples.npy          unconditional samples (uint8 levels [N, H, W, C]);
  stages.png                         multi-scale models: each small image | its full image;
  completion.png / completion.npy    with --complete: rows occluded | completions | original;
                                     the .npy holds the completions, originals.npy the
                                     images they started from.
The model is rebuilt from WORKDIR/config.json and the checkpoint restored by
runs.restore_run (the best by validation loss, else the latest).

This is the `sample` command; the samplers it calls are the library pixel_jax.sampling.
"""

import io
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
  flags.DEFINE_enum('method', None, list(sampling.METHODS),
                    'Sampler (default: config.sample.method).')
  flags.DEFINE_float('temperature', None, 'Softmax temperature; 0 is greedy (default: '
                     'config.sample.temperature).')
  flags.DEFINE_string('complete', None, 'Also complete images: a split name of the run\'s '
                      'dataset (test, validation, ...) or a .npy file of uint8 levels '
                      '[N, H, W, C] (or [N, H, W] for one channel).')
  flags.DEFINE_integer('keep_rows', None, 'Rows kept from the top of each image to complete '
                       '(default: half the height).')
  flags.DEFINE_string('checkpoint', 'best', '"best" (falls back to latest), "latest", or a '
                      'step number.')
  flags.DEFINE_integer('seed', 0, 'Sampling seed.')
  flags.DEFINE_string('output_dir', None, 'Where to write (default: WORKDIR/sampled).')
  flags.DEFINE_integer('scale', 2, 'Nearest-neighbour upscaling of the PNG grids.')
  flags.mark_flags_as_required(['workdir'])

OCCLUDED_RGB = (60, 60, 150)  # Unknown pixels in the occluded row (the padding is grey).


class SampleError(RuntimeError):
  """An input to complete or a flag that cannot be used; reported as one line."""


def load_images_to_complete(config: ml_collections.ConfigDict, source: str,
                            count: int) -> np.ndarray:
  """The first `count` images of a split name or a .npy file, uint8 [N, H, W, C]."""
  d = config.data
  if source.endswith('.npy'):
    if not storage.path(source).exists():
      raise SampleError(f'--complete={source} does not exist.')
    try:
      images = np.load(io.BytesIO(storage.path(source).read_bytes()), allow_pickle=False)
    except (OSError, ValueError) as e:
      raise SampleError(f'--complete={source} is not a readable .npy array ({e}).') from e
    if not (np.issubdtype(images.dtype, np.integer) or images.dtype == bool):
      raise SampleError(f'--complete={source} holds {images.dtype} values; it must hold '
                        f'integer levels (uint8) in [0, {d.num_levels}).')
    if images.ndim == 3 and d.num_channels == 1:
      images = images[..., None]
  else:
    try:
      # [:count] first: a streamed split (config.data.streaming) then reads only these.
      images = runs.load_split(runs.open_data(config), source)[:count]
    except Exception as e:  # pylint: disable=broad-except
      raise SampleError(f'Cannot load split {source!r} of {d.name}: {e}') from e
  expected = (d.image_size, d.image_size, d.num_channels)
  if images.ndim != 4 or tuple(images.shape[1:]) != expected:
    raise SampleError(f'Images to complete have shape {images.shape}; the model wants '
                      f'[N, {", ".join(map(str, expected))}].')
  if len(images) == 0:
    raise SampleError(f'--complete={source} holds no images.')
  if images.min() < 0 or images.max() >= d.num_levels:
    raise SampleError(f'Images to complete must hold levels in [0, {d.num_levels}), got '
                      f'[{images.min()}, {images.max()}].')
  return images[:count].astype(np.uint8)


def completion_grid(occluded_mask: np.ndarray, completions: np.ndarray,
                    originals: np.ndarray, num_levels: int) -> np.ndarray:
  """Three rows of N images: occluded input | completions | originals, uint8 RGB."""
  n, h, w, _ = originals.shape
  shown = np.where(occluded_mask, originals, 0)
  grid = image_grid.make_grid(np.concatenate([shown, completions, originals]), num_levels,
                              ncols=n, padding=1)
  unknown = ~np.all(occluded_mask, axis=-1)  # [N, H, W]: pixels not fully known.
  for i in range(n):
    top, left = 1, 1 + i * (w + 1)
    grid[top:top + h, left:left + w][unknown[i]] = OCCLUDED_RGB
  return grid


def run_sampling(workdir: str, num_samples: Optional[int] = None,
                 method: Optional[str] = None, temperature: Optional[float] = None,
                 complete: Optional[str] = None, keep_rows: Optional[int] = None,
                 checkpoint: str = 'best', seed: int = 0, output_dir: Optional[str] = None,
                 scale: int = 2) -> dict[str, str]:
  """Restores `workdir`, samples (and completes), writes the files; returns their paths.

  num_samples, method and temperature override the run's config.sample (None keeps it).
  """
  overrides = {field: value for field, value in (
      ('num_samples', num_samples), ('method', method), ('temperature', temperature))
               if value is not None}
  config = None
  if overrides:  # Validated with the rest of the config by restore_run.
    config = checkpointing.load_config(workdir)
    config.sample.update(overrides)
  run = runs.restore_run(workdir, checkpoint, config)
  config, model, step = run.config, run.model, run.step
  # Sampling is sequential per image: one device, not a replicated copy on every device.
  params = jax.device_put(jax.device_get(run.state.params), jax.devices()[0])
  num_samples, method = config.sample.num_samples, config.sample.method
  temperature = config.sample.temperature
  if complete:  # Checked before any sampling.
    originals = load_images_to_complete(config, complete, num_samples)
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
  images = np.asarray(sampling.sample(model, variables, rng, num_samples, method=method,
                                      temperature=temperature))
  logging.info('%d samples (%s, T=%g) from step %d in %.1fs.', num_samples, method,
               temperature, step, time.time() - start)
  written['samples.npy'] = storage.save_npy(os.path.join(output_dir, 'samples.npy'), images)
  written['samples.png'] = image_grid.save_png(
      os.path.join(output_dir, 'samples.png'), image_grid.make_grid(images, levels),
      scale=scale)
  if models.has_stages(model):  # The small image beside its full one.
    written['stages.png'] = image_grid.save_png(
        os.path.join(output_dir, 'stages.png'),
        image_grid.stages_grid(multiscale.subsample(images, model.factor), images, levels),
        scale=scale)
  if complete:
    mask = np.zeros(originals.shape, bool)
    mask[:, :keep] = True
    completions = np.asarray(sampling.sample(
        model, variables, jax.random.fold_in(rng, 1), len(originals), method=method,
        temperature=temperature, prefix=originals, prefix_mask=mask))
    for name, array in (('completion.npy', completions), ('originals.npy', originals)):
      written[name] = storage.save_npy(os.path.join(output_dir, name), array)
    written['completion.png'] = image_grid.save_png(
        os.path.join(output_dir, 'completion.png'),
        completion_grid(mask, completions, originals, levels), scale=scale)
  return written


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Too many command-line arguments: {argv[1:]}')
  checkpointing.quiet_orbax_logs()
  console.quiet_library_logs()
  try:
    written = run_sampling(FLAGS.workdir, FLAGS.num_samples, FLAGS.method, FLAGS.temperature,
                           FLAGS.complete, FLAGS.keep_rows, FLAGS.checkpoint, FLAGS.seed,
                           FLAGS.output_dir, FLAGS.scale)
  except (SampleError, *runs.USER_ERRORS) as e:
    logging.error('%s', e)
    sys.exit(f'pixel_jax.sample: error: {e}')
  for path in written.values():
    print(path, flush=True)


def run(argv: Optional[list[str]] = None) -> None:
  app.run(main, argv=argv)


if __name__ == '__main__':
  define_flags()
  jax.config.config_with_absl()
  run()
