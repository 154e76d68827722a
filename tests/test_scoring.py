"""Likelihood maps and scoring: per-pixel NLL, heatmaps, image files, pixel_jax.score."""

import csv
import functools
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest

from pixel_jax import checkpointing
from pixel_jax import evaluate
from pixel_jax import evaluation
from pixel_jax import image_files
from pixel_jax import image_grid
from pixel_jax import models
from pixel_jax import optim
from pixel_jax import runs
from pixel_jax import score
from pixel_jax import sharding
from pixel_jax import storage
from pixel_jax import train_state


def _workdir(path, config):
  """A real workdir: config.json and the step-0 checkpoint of the initialised state, with
  its biases and initial states set non-zero so every image gets a different NLL."""
  checkpointing.save_config(str(path), config)
  mesh = sharding.make_mesh(config.mesh.num_devices)
  model, tx = models.get_model(config), optim.make_optimizer(config)
  state = train_state.init_state(config, model, tx, mesh)
  leaves, treedef = jax.tree.flatten(state.params)
  rs = np.random.RandomState(0)
  params = jax.tree.unflatten(
    treedef,
    [
      jax.device_put(
        np.asarray(x) + 0.3 * rs.standard_normal(x.shape).astype(np.float32), x.sharding
      )
      for x in leaves
    ],
  )
  state = state.replace(params=params)
  ckpt = checkpointing.Checkpointer(str(path), keep=1)
  ckpt.save(0, state)
  ckpt.close()
  return state, model, mesh


@pytest.mark.parametrize('name,channels,levels', [('row_lstm', 1, 2), ('pixelcnn', 3, 256)])
def test_pixel_nlls_sum_to_each_image_nll(tiny_config, name, channels, levels):
  config = tiny_config(name, channels=channels, levels=levels, size=5)
  config.eval.batch_size = 8  # 11 images: a second, padded batch on the 8 devices.
  model, mesh = models.get_model(config), sharding.make_mesh()
  rng = np.random.default_rng(0)
  images = rng.integers(0, levels, (11, 5, 5, channels)).astype(np.uint8)
  shapes = jax.eval_shape(model.init, jax.random.key(0), images[:1].astype(np.float32))
  params = jax.tree.map(
    lambda s: 0.3 * rng.standard_normal(s.shape).astype(np.float32), shapes['params']
  )
  step_fn = evaluation.make_pixel_nll_step(model, mesh)
  maps = evaluation.pixel_nlls(config, model, params, images, mesh, step_fn)
  assert maps.shape == (11, 5, 5) and maps.dtype == np.float32 and (maps >= 0).all()
  per_image = np.asarray(jax.jit(functools.partial(evaluation.nll_fn, model=model))(params, images))
  np.testing.assert_allclose(maps.sum(axis=(1, 2)), per_image, rtol=2e-5)
  # Row order survives batching and padding: reversed images give reversed maps.
  np.testing.assert_allclose(
    evaluation.pixel_nlls(config, model, params, images[::-1], mesh, step_fn),
    maps[::-1],
    rtol=1e-5,
    atol=1e-6,
  )


def test_colormap_and_heatmap_panel():
  np.testing.assert_array_equal(
    image_grid.colormap(np.array([0.0, 1.0, 2.0, -1.0])),
    image_grid.VIRIDIS[[0, -1, -1, 0]].astype(np.uint8),
  )
  ramp = image_grid.colormap(np.linspace(0, 1, 50))
  luminance = ramp.astype(float) @ [0.299, 0.587, 0.114]
  assert (np.diff(luminance) > 0).all()  # Brighter with every step: readable in grey.
  images = np.array([[[0, 1], [1, 0]], [[1, 1], [0, 0]]], np.uint8)[..., None]
  maps = np.array([[[0.0, 4.0], [2.0, 1.0]], [[3.0, 0.0], [0.0, 2.0]]], np.float32)
  panel = image_grid.heatmap_panel(
    images, maps, num_levels=2, pairs_per_row=2, scale=10, captions=['a', 'b']
  )
  assert panel.dtype == np.uint8 and panel.shape[-1] == 3
  for k in range(2):  # Each image, and right of it on the same row, its heatmap.
    image_block = np.repeat(images[k].repeat(10, 0).repeat(10, 1) * 255, 3, axis=-1)
    heat_block = image_grid.colormap(maps[k] / 4.0).repeat(10, 0).repeat(10, 1)
    ((y, x),) = _find(panel, image_block)
    ((hy, hx),) = _find(panel, heat_block)
    assert hy == y and x + 20 <= hx <= x + 30
  with pytest.raises(ValueError, match='heatmap_panel wants'):
    image_grid.heatmap_panel(images, maps[:, :1], num_levels=2)


def _find(panel, block):
  """Every (y, x) where `block` appears in `panel` exactly."""
  h, w = block.shape[:2]
  return [
    (y, x)
    for y in range(panel.shape[0] - h + 1)
    for x in range(panel.shape[1] - w + 1)
    if (panel[y, x] == block[0, 0]).all() and (panel[y : y + h, x : x + w] == block).all()
  ]


def _save_pngs(folder, arrays, mode):
  os.makedirs(folder, exist_ok=True)
  for i, a in enumerate(arrays):
    Image.fromarray(a, mode=None).convert(mode).save(os.path.join(folder, f'img{i}.png'))


def test_image_files_png_and_npy(tiny_config, tmp_path):
  grey = tiny_config('row_lstm')  # 8x8, one channel, binary.
  rng = np.random.default_rng(0)
  bits = rng.integers(0, 2, (3, 8, 8)).astype(np.uint8)
  _save_pngs(tmp_path / 'bw', bits * 255, 'L')
  images, names = image_files.load_images(str(tmp_path / 'bw'), grey)
  assert names == ['img0.png', 'img1.png', 'img2.png']
  np.testing.assert_array_equal(images, bits[..., None])
  # An RGB file with equal channels (e.g. a saved sample grid) feeds a grey model.
  _save_pngs(tmp_path / 'rgbgrey', bits * 255, 'RGB')
  np.testing.assert_array_equal(
    image_files.load_images(str(tmp_path / 'rgbgrey'), grey)[0], bits[..., None]
  )
  # Grey values: refused for a binary model unless binarize thresholds them at 128.
  values = rng.integers(0, 256, (2, 8, 8)).astype(np.uint8)
  _save_pngs(tmp_path / 'grey', values, 'L')
  with pytest.raises(image_files.ImageFileError, match='--binarize'):
    image_files.load_images(str(tmp_path / 'grey'), grey)
  np.testing.assert_array_equal(
    image_files.load_images(str(tmp_path / 'grey'), grey, binarize=True)[0],
    (values >= 128)[..., None],
  )
  # .npy: [N, H, W] for one channel, integer levels.
  np.save(tmp_path / 'levels.npy', bits)
  images, names = image_files.load_images(str(tmp_path / 'levels.npy'), grey)
  np.testing.assert_array_equal(images, bits[..., None])
  assert names == ['levels.npy[0]', 'levels.npy[1]', 'levels.npy[2]']
  colour = tiny_config('pixelcnn', channels=3, levels=256)
  rgb = rng.integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
  _save_pngs(tmp_path / 'rgb', rgb, 'RGB')
  np.testing.assert_array_equal(image_files.load_images(str(tmp_path / 'rgb'), colour)[0], rgb)
  np.save(tmp_path / 'rgb.npy', rgb.astype(np.int64))
  np.testing.assert_array_equal(image_files.load_images(str(tmp_path / 'rgb.npy'), colour)[0], rgb)


@pytest.mark.parametrize(
  'case,match',
  [
    ('empty_folder', 'holds no .png files'),
    ('missing', r'in\.npy does not exist; give a folder of PNG files or a \.npy file\.'),
    ('missing_folder', r'nowhere does not exist; give a folder of PNG files'),
    ('unreadable_entry', r'cannot read .*/in/img0\.png \(IsADirectoryError: .*\); give a path'),
    ('not_png', r'in/img0\.png is not a readable PNG file'),
    ('truncated_npy', r'in\.npy is not a readable \.npy file'),
    ('not_images', 'neither a folder of PNG files nor a .npy'),
    ('wrong_size', r'is 9x8 pixels; the model reads 8x8'),
    ('colour_for_grey', 'is a colour image; the model reads grey'),
    ('grey_for_colour', 'is a grey image; the model reads RGB'),
    ('float_npy', 'holds float32 values; give integer levels'),
    ('out_of_range', r'holds levels in \[0, 2\]; the model reads levels in \[0, 1\]'),
    ('negative', r'holds levels in \[-1, 1\]'),
    ('wrong_shape', r'shape \(2, 8, 8, 3\); the model reads \[N, 8, 8, 1\]'),
    ('no_images', 'holds no images'),
    ('transparent', 'has transparent pixels'),
  ],
)
def test_bad_images_are_one_clear_error(tiny_config, tmp_path, case, match):
  config = tiny_config('row_lstm')
  if case == 'grey_for_colour':
    config = tiny_config('row_lstm', channels=3, levels=256)
  source = str(tmp_path / 'in')
  zeros = np.zeros((8, 8), np.uint8)
  if case == 'empty_folder':
    os.makedirs(source)
    (tmp_path / 'in' / 'notes.txt').write_text('no images')
  elif case == 'missing':
    source += '.npy'
  elif case == 'missing_folder':
    source = str(tmp_path / 'nowhere')
  elif case == 'unreadable_entry':  # A folder named like a PNG: listed, then not readable.
    os.makedirs(os.path.join(source, 'img0.png'))
  elif case == 'not_png':
    os.makedirs(source)
    (tmp_path / 'in' / 'img0.png').write_bytes(b'not a png')
  elif case == 'truncated_npy':
    source += '.npy'
    np.save(source, np.zeros((2, 8, 8), np.uint8))
    with open(source, 'r+b') as f:
      f.truncate(100)
  elif case == 'not_images':
    source += '.txt'
    (tmp_path / 'in.txt').write_text('')
  elif case == 'wrong_size':
    _save_pngs(source, [np.zeros((8, 9), np.uint8)], 'L')
  elif case == 'colour_for_grey':
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    _save_pngs(source, [rgb], 'RGB')
  elif case == 'grey_for_colour':
    _save_pngs(source, [zeros], 'L')
  elif case == 'transparent':
    rgba = np.zeros((8, 8, 4), np.uint8)
    _save_pngs(source, [rgba], 'RGBA')
  else:
    source += '.npy'
    array = {
      'float_npy': np.zeros((2, 8, 8), np.float32),
      'out_of_range': np.array([0, 2] * 64, np.uint8).reshape(2, 8, 8),
      'negative': np.array([-1, 1] * 64).reshape(2, 8, 8),
      'wrong_shape': np.zeros((2, 8, 8, 3), np.uint8),
      'no_images': np.zeros((0, 8, 8), np.uint8),
    }[case]
    np.save(source, array)
  with pytest.raises(image_files.ImageFileError, match=match) as error:
    image_files.load_images(source, config)
  assert '\n' not in str(error.value)


def test_unreadable_inputs_name_the_path_and_what_to_do():
  local = storage.read_error_text(PermissionError(13, 'Permission denied'), '/data/x.npy')
  assert local == (
    'cannot read /data/x.npy (PermissionError: [Errno 13] Permission denied); '
    'give a path that you can read.'
  )
  # Object-store clients raise their own errors (no credentials, ...): all are the storage's.
  remote = storage.read_error_text(RuntimeError('401\n Anonymous caller'), 'gs://b/x.npy')
  assert remote == (
    'cannot read gs://b/x.npy (RuntimeError: 401 Anonymous caller); '
    'check the bucket name and your credentials.'
  )
  assert storage.read_error_text(KeyError('x'), '/data/x.npy') is None  # A bug: not hidden.


def test_score_and_heatmaps_of_a_run(tiny_config, tmp_path):
  config = tiny_config('row_lstm')
  config.eval.max_examples = 16
  workdir = tmp_path / 'run'
  state, model, _ = _workdir(workdir, config)
  digits = np.random.default_rng(1).integers(0, 2, (5, 8, 8)).astype(np.uint8)
  _save_pngs(tmp_path / 'pngs', digits * 255, 'L')
  rows, run = score.score_images(str(workdir), str(tmp_path / 'pngs'), batch_size=4)
  assert run.step == 0 and run.config.eval.batch_size == 4
  expected = np.asarray(
    evaluation.nll_fn(jax.device_get(state.params), digits[..., None], model=model)
  )
  assert [r['image'] for r in rows] == [f'img{i}.png' for i in range(5)]
  np.testing.assert_allclose([r['nll_nats'] for r in rows], expected, rtol=2e-5)
  for r in rows:
    assert r['bits_per_dim'] == pytest.approx(r['nll_nats'] / (64 * math.log(2)))
  paths = score.write_scores(rows, str(tmp_path / 'scores'))
  with open(paths['csv']) as f:
    table = list(csv.DictReader(f))
  assert list(table[0]) == list(score.FIELDS) and len(table) == 5
  assert float(table[3]['nll_nats']) == pytest.approx(rows[3]['nll_nats'])
  with open(paths['jsonl']) as f:
    assert [json.loads(line) for line in f] == rows
  # Images that do not fit are refused before the checkpoint is read.
  np.save(tmp_path / 'bad.npy', np.zeros((1, 8, 8), np.float64))
  with pytest.raises(image_files.ImageFileError, match='float64'):
    score.score_images(str(workdir), str(tmp_path / 'bad.npy'))

  # evaluate --heatmaps: the first N images of the split beside their per-pixel NLL.
  result = evaluate.evaluate(
    None, str(workdir), split='validation', heatmaps=3, heatmaps_dir=str(tmp_path / 'maps')
  )
  names = sorted(os.listdir(tmp_path / 'maps'))
  assert names == [
    'heatmap_000.png',
    'heatmap_001.png',
    'heatmap_002.png',
    'heatmaps.npy',
    'heatmaps.png',
  ]
  assert sorted(map(os.path.basename, result['heatmaps'])) == names
  bits = np.load(tmp_path / 'maps' / 'heatmaps.npy')
  assert bits.shape == (3, 8, 8) and (bits >= 0).all()
  # The maps, in bits, sum to each image's NLL.
  first3 = runs.load_split(runs.open_data(run.config), 'validation')[:3]
  np.testing.assert_allclose(
    bits.sum(axis=(1, 2)) * math.log(2),
    evaluation.nll_fn(jax.device_get(state.params), first3, model=model),
    rtol=2e-5,
  )
  panel = np.asarray(Image.open(tmp_path / 'maps' / 'heatmaps.png'))
  assert panel.ndim == 3 and panel.shape[1] > 2 * 8 * 14


@pytest.mark.slow
def test_score_cli_writes_files_and_bad_input_is_one_line(tiny_config, tmp_path):
  config = tiny_config('row_lstm')
  workdir = tmp_path / 'run'
  _workdir(workdir, config)
  np.save(tmp_path / 'ok.npy', np.random.default_rng(0).integers(0, 2, (3, 8, 8)))
  np.save(tmp_path / 'bad.npy', np.full((3, 8, 8), 7))

  def run(images):
    return subprocess.run(
      [sys.executable, '-m', 'pixel_jax.score', f'--workdir={workdir}', f'--images={images}'],
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
    )

  good = run(tmp_path / 'ok.npy')
  assert good.returncode == 0, good.stderr[-2000:]
  assert '3 images of' in good.stdout
  assert os.path.exists(workdir / 'scores' / 'scores.csv')
  with open(workdir / 'scores' / 'scores.jsonl') as f:
    assert len(f.readlines()) == 3
  bad = run(tmp_path / 'bad.npy')
  assert bad.returncode == 1
  assert (
    bad.stderr.strip()
    .splitlines()[-1]
    .startswith(f'pixel_jax.score: error: {tmp_path}/bad.npy holds levels in [7, 7]')
  )
