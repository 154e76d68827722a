"""imagenet_manual: both layouts of downsampled ImageNet, generated small, offline, no TF.

Files are generated in each layout a user may have (the original release's tar files of PNGs
or their extracted folders; the npz batches), prepared, streamed, trained on and evaluated.
"""

import io
import os
import pathlib
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import imagenet32_rowlstm
from experiments import imagenet64_multiscale
from experiments import imagenet64_rowlstm
from pixel_jax import configs
from pixel_jax import input_pipeline
from pixel_jax import train

tfds.disable_progress_bar()

REPO = pathlib.Path(__file__).resolve().parents[1]

EXPERIMENTS = {
  'imagenet32_rowlstm': imagenet32_rowlstm,
  'imagenet64_rowlstm': imagenet64_rowlstm,
  'imagenet64_multiscale': imagenet64_multiscale,
}


def make_images(num: int, size: int, seed: int) -> np.ndarray:
  """Smooth random colour images (like photos, they compress; unlike noise, they learn)."""
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 256, size=(num, 4, 4, 3)).astype(np.float64)
  ramp = np.linspace(0, 3, size)
  i0 = np.floor(ramp).astype(int).clip(0, 2)
  t = (ramp - i0)[None, :, None, None]
  rows = coarse[:, i0] * (1 - t) + coarse[:, i0 + 1] * t
  t = t.transpose(0, 2, 1, 3)
  image = rows[:, :, i0] * (1 - t) + rows[:, :, i0 + 1] * t
  return (image + rng.integers(-8, 9, size=image.shape)).clip(0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, 'PNG')
  return buffer.getvalue()


def write_original(
  folder: pathlib.Path, splits: dict[str, np.ndarray], *, extracted: bool = False
) -> None:
  """The paper authors' release: train_SxS.tar / valid_SxS.tar of PNGs (or the folders)."""
  folder.mkdir(parents=True, exist_ok=True)
  for split, images in splits.items():
    name = f'{split}_{images.shape[1]}x{images.shape[1]}'
    if extracted:
      (folder / name).mkdir()
      for i, image in enumerate(images):
        (folder / name / f'{i:07d}.png').write_bytes(png_bytes(image))
      continue
    with tarfile.open(folder / f'{name}.tar', 'w') as tar:
      for i, image in enumerate(images):
        data = png_bytes(image)
        info = tarfile.TarInfo(f'{name}/{i:07d}.png')
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def write_npz(folder: pathlib.Path, splits: dict[str, np.ndarray], *, num_batches: int = 2) -> None:
  """The mirrored npz release: flattened channel-first rows, 1-based labels, in batches."""
  size = splits['train'].shape[1]

  def rows(images):
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)

  train_dir = folder / f'Imagenet{size}_train_npz'
  val_dir = folder / f'Imagenet{size}_val_npz'
  train_dir.mkdir(parents=True)
  val_dir.mkdir(parents=True)
  for n, part in enumerate(np.array_split(splits['train'], num_batches), start=1):
    np.savez_compressed(
      train_dir / f'train_data_batch_{n}.npz',
      data=rows(part),
      labels=np.arange(len(part)) % 1000 + 1,
    )
  np.savez_compressed(
    val_dir / 'val_data.npz',
    data=rows(splits['valid']),
    labels=np.arange(len(splits['valid'])) % 1000 + 1,
  )


def write_layout(layout: str, folder: pathlib.Path, splits: dict[str, np.ndarray]) -> None:
  if layout == 'npz':
    write_npz(folder, splits)
  else:
    write_original(folder, splits, extracted=layout == 'folders')


def data_config(size: int, manual_dir: pathlib.Path, data_dir: pathlib.Path):
  config = configs.imagenet_config('row_lstm', size)
  config.data.manual_dir = str(manual_dir)
  config.data.data_dir = str(data_dir)
  return config


def by_content(images: np.ndarray) -> np.ndarray:
  """The images in a canonical order, so splits stored in different orders compare."""
  return images[np.argsort([image.tobytes() for image in images], kind='stable')]


def one_line_error(config, split='train') -> str:
  with pytest.raises(ValueError) as info:
    input_pipeline.open(config).load(split)
  message = str(info.value)
  assert '\n' not in message, message
  return message


# ------------------------------------------------------------------------------- layouts


def test_every_layout_gives_the_same_pixels(tmp_path):
  splits = {'train': make_images(24, 32, seed=0), 'valid': make_images(8, 32, seed=1)}
  read = {}
  for layout in ('tar', 'folders', 'npz'):
    write_layout(layout, tmp_path / layout, splits)
    config = data_config(32, tmp_path / layout, tmp_path / 'tfds')
    train_split = input_pipeline.open(config).load('train')
    assert isinstance(train_split, input_pipeline.StreamingSplit)
    read[layout] = (train_split[:], input_pipeline.open(config).load('validation')[:])
    caveat = input_pipeline.open(config).info.caveat
    if layout == 'npz':
      assert 'NOT comparable' in caveat and 'Chrabaszcz' in caveat
    else:
      assert caveat is None
  for layout, (train_images, valid_images) in read.items():
    np.testing.assert_array_equal(
      by_content(train_images), by_content(splits['train']), err_msg=layout
    )
    np.testing.assert_array_equal(
      by_content(valid_images), by_content(splits['valid']), err_msg=layout
    )


def test_tfds_manual_dir_convention(tmp_path):
  """`tfds build imagenet_manual/64x64 --manual_dir=DIR` works too (no fingerprinted config)."""
  splits = {'train': make_images(6, 64, seed=10), 'valid': make_images(3, 64, seed=11)}
  write_npz(tmp_path / 'files', splits)
  builder = tfds.builder('imagenet_manual/64x64', data_dir=str(tmp_path / 'tfds'))
  builder.download_and_prepare(
    file_format='array_record',
    download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / 'files')),
  )
  valid = tfds.data_source(
    'imagenet_manual/64x64', split='validation', data_dir=str(tmp_path / 'tfds')
  )
  images = np.stack([valid[i]['image'] for i in range(len(valid))])
  np.testing.assert_array_equal(by_content(images), by_content(splits['valid']))


def test_imagenet_resized_by_name_carries_the_caveat(tmp_path):
  config = configs.imagenet_config('row_lstm', 32)
  config.data.update(name='imagenet_resized/32x32', data_dir=str(tmp_path), offline=True)
  with tfds.testing.mock_data(num_examples=8):
    data = input_pipeline.open(config)
    assert data.load('train').shape == (8, 32, 32, 3)
  assert 'NOT comparable' in data.info.caveat and 'imagenet_resized' in data.info.caveat


def test_missing_and_corrupt_files_fail_with_one_line(tmp_path):
  (tmp_path / 'empty').mkdir()
  message = one_line_error(data_config(32, tmp_path / 'empty', tmp_path / 'tfds'))
  assert 'train_32x32.tar' in message and 'valid_32x32.tar' in message
  assert 'Imagenet32_train_npz' in message and str(tmp_path / 'empty') in message
  unset = data_config(32, tmp_path, tmp_path / 'tfds')
  unset.data.manual_dir = ''
  assert 'config.data.manual_dir is not set' in one_line_error(unset)

  splits = {'train': make_images(16, 32, seed=2), 'valid': make_images(4, 32, seed=3)}
  write_original(tmp_path / 'half', {'train': splits['train']})
  message = one_line_error(data_config(32, tmp_path / 'half', tmp_path / 'tfds'))
  assert 'valid_32x32.tar' in message and 'missing' in message

  write_original(tmp_path / 'tar', splits)
  tar_file = tmp_path / 'tar' / 'train_32x32.tar'
  tar_file.write_bytes(tar_file.read_bytes()[: tar_file.stat().st_size // 2])
  message = one_line_error(data_config(32, tmp_path / 'tar', tmp_path / 'tfds'))
  assert f'{tar_file} is truncated or corrupt' in message

  write_original(tmp_path / 'png', splits, extracted=True)
  bad_png = tmp_path / 'png' / 'valid_32x32' / '0000002.png'
  bad_png.write_bytes(bad_png.read_bytes()[:40])
  message = one_line_error(data_config(32, tmp_path / 'png', tmp_path / 'tfds'))
  assert f'{bad_png} is truncated or corrupt' in message

  write_npz(tmp_path / 'npz', splits)
  npz_file = tmp_path / 'npz' / 'Imagenet32_train_npz' / 'train_data_batch_2.npz'
  npz_file.write_bytes(npz_file.read_bytes()[: npz_file.stat().st_size - 200])
  message = one_line_error(data_config(32, tmp_path / 'npz', tmp_path / 'tfds'))
  assert f'{npz_file} is truncated or corrupt' in message

  write_npz(tmp_path / 'twice', splits)
  (tmp_path / 'twice' / 'val_data.npz').write_bytes(
    (tmp_path / 'twice' / 'Imagenet32_val_npz' / 'val_data.npz').read_bytes()
  )
  assert 'keep one copy' in one_line_error(data_config(32, tmp_path / 'twice', tmp_path / 'tfds'))

  write_npz(tmp_path / 'npz32', splits)  # 32x32 rows where 64x64 ones are expected.
  message = one_line_error(data_config(64, tmp_path / 'npz32', tmp_path / 'tfds'))
  assert 'no 64x64 ImageNet files' in message
  (tmp_path / 'npz32' / 'Imagenet32_val_npz' / 'val_data.npz').rename(
    tmp_path / 'npz32' / 'val_data.npz'
  )
  for path in (tmp_path / 'npz32' / 'Imagenet32_train_npz').iterdir():
    path.rename(tmp_path / 'npz32' / path.name)  # Loose files are accepted for any size...
  message = one_line_error(data_config(64, tmp_path / 'npz32', tmp_path / 'tfds'))
  assert 'not a 64x64 npz batch' in message  # ...and then checked.


# ----------------------------------------------------------------------------- streaming


def test_streamed_batches_equal_in_memory_batches_and_resume_exactly(tmp_path):
  splits = {'train': make_images(37, 32, seed=4), 'valid': make_images(5, 32, seed=5)}
  write_npz(tmp_path / 'npz', splits, num_batches=3)
  config = data_config(32, tmp_path / 'npz', tmp_path / 'tfds')
  streamed = input_pipeline.open(config).load('train')
  config.data.streaming = False
  in_memory = input_pipeline.open(config).load('train')
  assert isinstance(in_memory, np.ndarray) and streamed.shape == in_memory.shape
  np.testing.assert_array_equal(streamed[:], in_memory)

  def batches(images, start_step=0, rows=slice(None), count=8):
    stream = input_pipeline.train_batches(
      config, images, seed=3, start_step=start_step, batch_size=8, rows=rows
    )
    return [next(stream) for _ in range(count)]

  expected = batches(in_memory)  # 64 examples: crosses the epoch boundary at 37.
  for got, want in zip(batches(streamed), expected):
    np.testing.assert_array_equal(got, want)
  for got, want in zip(batches(streamed, start_step=5, count=3), expected[5:]):
    np.testing.assert_array_equal(got, want)
  # Two processes, each reading its half of every batch, feed exactly the same batches.
  halves = zip(batches(streamed, rows=slice(0, 4)), batches(streamed, rows=slice(4, 8)))
  for (first, second), want in zip(halves, expected):
    np.testing.assert_array_equal(np.concatenate([first, second]), want)

  eval_images = np.concatenate([b[m] for b, m in input_pipeline.eval_batches(streamed, 16)])
  np.testing.assert_array_equal(eval_images, in_memory)
  for (b1, m1), (b2, m2), (b, m) in zip(  # Two processes' halves of each evaluation batch.
    input_pipeline.eval_batches(streamed, 16, rows=slice(0, 8)),
    input_pipeline.eval_batches(streamed, 16, rows=slice(8, 16)),
    input_pipeline.eval_batches(in_memory, 16),
  ):
    np.testing.assert_array_equal(np.concatenate([b1, b2]), b)
    np.testing.assert_array_equal(np.concatenate([m1, m2]), m)


def test_streaming_refuses_seeded_binarization(tmp_path):
  config = configs.base_config()
  config.data.data_dir = str(tmp_path)
  config.data.streaming = True
  with pytest.raises(ValueError, match='streaming=True cannot apply binarization'):
    input_pipeline.open(config).load('train')
  config.data.binarization = 'threshold'
  streamed = input_pipeline.open(config).load('train')
  config.data.streaming = False
  np.testing.assert_array_equal(streamed[:50], input_pipeline.open(config).load('train')[:50])


# ------------------------------------------------------------------------------ training


def tiny(config, manual_dir: pathlib.Path, data_dir: pathlib.Path):
  """The experiment's data settings with a tiny model and a few steps."""
  config.data.manual_dir, config.data.data_dir = str(manual_dir), str(data_dir)
  model = config.model
  model.num_layers, model.hidden_channels, model.out_hidden_channels = 1, 4, 8
  model.first_kernel_size, model.scan_layers = 3, False
  ms = model.multiscale
  ms.small_num_layers, ms.small_hidden_channels, ms.cond_channels = 1, 4, 4
  config.optim.schedule, config.optim.warmup_steps = 'constant', 0
  config.train.update(
    batch_size=8, num_steps=3, log_every=1, eval_every=0, checkpoint_every=0, sample_every=0
  )
  config.eval.update(batch_size=8, max_examples=16)
  return config


@pytest.mark.slow  # Trains end to end.
@pytest.mark.parametrize(
  'experiment,layout',
  [
    ('imagenet32_rowlstm', 'tar'),
    ('imagenet64_rowlstm', 'npz'),
    ('imagenet64_multiscale', 'folders'),
  ],
)
def test_experiment_prepares_trains_and_evaluates(tmp_path, experiment, layout):
  config = EXPERIMENTS[experiment].get_config()
  size = config.data.image_size
  splits = {'train': make_images(200, size, seed=6), 'valid': make_images(40, size, seed=7)}
  write_layout(layout, tmp_path / 'files', splits)
  config = tiny(config, tmp_path / 'files', tmp_path / 'tfds')
  state, summary = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert int(state.step) == 3 and summary['unit'] == 'bits/dim'
  assert np.isfinite(summary['eval_loss']) and np.isfinite(summary['test_loss'])
  assert summary['data'].startswith(f'imagenet_manual/{size}x{size}')
  assert ('NOT comparable' in summary['data']) == (layout == 'npz')
  assert 'NOT comparable' not in summary['data'] or 'Chrabaszcz' in summary['data']
  (prepared,) = (tmp_path / 'tfds' / 'imagenet_manual').glob('[0-9]*')
  assert prepared.name.startswith(f'{size}x{size}_{"npz" if layout == "npz" else "original"}_')


@pytest.mark.slow
def test_cli_trains_on_the_original_release_without_tensorflow(tmp_path):
  """The command in experiments/imagenet32_rowlstm.py; TensorFlow is never imported."""
  write_original(
    tmp_path / 'files', {'train': make_images(64, 32, seed=8), 'valid': make_images(16, 32, seed=9)}
  )
  flags = [
    f'--config={REPO}/experiments/imagenet32_rowlstm.py',
    f'--workdir={tmp_path}/run',
    f'--config.data.manual_dir={tmp_path}/files',
    f'--config.data.data_dir={tmp_path}/tfds',
    '--config.model.num_layers=1',
    '--config.model.hidden_channels=4',
    '--config.model.out_hidden_channels=8',
    '--config.model.scan_layers=False',
    '--config.optim.warmup_steps=0',
    '--config.train.batch_size=8',
    '--config.train.num_steps=2',
    '--config.train.sample_every=0',
    '--config.train.eval_every=0',
    '--config.eval.max_examples=8',
    '--config.eval.batch_size=8',
  ]
  code = (
    'import runpy, sys\n'
    f"sys.argv = ['pixel_jax.main'] + {flags!r}\n"
    'try:\n'
    "  runpy.run_module('pixel_jax.main', run_name='__main__')\n"
    'except SystemExit as e:\n'
    '  assert not e.code, e.code\n'
    "print('TF_MODULES', sorted(m for m in sys.modules\n"
    "                           if m.split('.')[0] == 'tensorflow'))\n"
  )
  env = dict(os.environ, PYTHONPATH=str(REPO / 'src'))
  result = subprocess.run(
    [sys.executable, '-c', code],
    cwd=str(tmp_path),
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Done: 2 steps' in result.stdout and 'imagenet_manual/32x32' in result.stdout
  assert 'TF_MODULES []' in result.stdout
