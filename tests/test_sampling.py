"""Sampling: the cached sampler equals the naive one, completion, temperature, outputs.

Tiny random networks (6x6 images, h = 4 or 6, 2 layers) with every parameter random,
initial states and biases included, so every cache path carries non-trivial values.
"""

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixel_jax import checkpointing
from pixel_jax import runs
from pixel_jax import sample as sample_cli
from pixel_jax import sampling
from pixel_jax import sampling_cache
from pixel_jax.models import get_model
from pixel_jax.models import layers

SIZE = 6

# (id, model, channels, levels, scan_layers, skip, residual, dtype): every model in grey
# binary and in 256-level RGB, with both layer layouts, skip, no residual and bfloat16.
CASES = [
  pytest.param(*case[1:], id=case[0])
  for case in (
    ('row_lstm_1ch_scan', 'row_lstm', 1, 2, True, False, True, 'float32'),
    ('row_lstm_3ch_unrolled_skip', 'row_lstm', 3, 256, False, True, True, 'float32'),
    ('diagonal_1ch_unrolled_skip', 'diagonal_bilstm', 1, 2, False, True, True, 'float32'),
    ('diagonal_3ch_scan', 'diagonal_bilstm', 3, 256, True, False, True, 'float32'),
    ('diagonal_3ch_plain', 'diagonal_bilstm', 3, 256, True, False, False, 'float32'),
    ('pixelcnn_1ch_scan', 'pixelcnn', 1, 2, True, False, True, 'float32'),
    ('pixelcnn_3ch_unrolled_skip_plain', 'pixelcnn', 3, 256, False, True, False, 'float32'),
    ('gated_1ch_scan', 'gated_pixelcnn', 1, 2, True, False, True, 'float32'),
    ('gated_3ch_unrolled_skip_plain', 'gated_pixelcnn', 3, 256, False, True, False, 'float32'),
  )
]


@functools.lru_cache(maxsize=None)
def _build(
  tiny_config,
  name,
  channels,
  levels,
  scan=True,
  skip=False,
  residual=True,
  dtype='float32',
  out_hidden_layers=1,
  classes=0,
):
  """A tiny model and random variables (cached: built once per case); `classes` > 0 makes
  it class-conditional."""
  config = tiny_config(
    name,
    channels=channels,
    levels=levels,
    size=SIZE,
    hidden_channels=4 if channels == 1 else 6,
    out_hidden_channels=8 if channels == 1 else 9,
    first_kernel_size=7,
    scan_layers=scan,
    skip=skip,
    residual=residual,
    dtype=dtype,
    out_hidden_layers=out_hidden_layers,
    num_classes=classes,
  )
  model = get_model(config)
  # Shapes from a trace only (compiling init costs seconds), then N(0, 0.5^2) everywhere:
  # initial states and biases, which init sets to zero, must be non-zero here.
  labels = jnp.zeros((1,), jnp.int32) if classes else None
  shapes = jax.eval_shape(
    functools.partial(model.init, labels_B=labels),
    jax.random.key(0),
    jnp.zeros((1, SIZE, SIZE, channels)),
  )
  rs = np.random.RandomState(1)
  variables = jax.tree_util.tree_map(
    lambda a: jnp.asarray(0.5 * rs.standard_normal(a.shape), jnp.float32), shapes
  )
  return model, variables


@functools.lru_cache(maxsize=None)
def _forward(model):
  return jax.jit(model.apply)


def _random_images(model, n, seed):
  shape = (n, SIZE, SIZE, model.num_channels)
  return jax.random.randint(jax.random.key(seed), shape, 0, model.num_levels)


CASE_ARGS = 'name, channels, levels, scan, skip, residual, dtype'


@pytest.mark.parametrize(CASE_ARGS, CASES)
def test_same_samples_for_same_key(
  tiny_config, name, channels, levels, scan, skip, residual, dtype
):
  model, variables = _build(tiny_config, name, channels, levels, scan, skip, residual, dtype)
  key = jax.random.key(7)
  cached = sampling.sample(model, variables, key, 3, method='cached')
  naive = sampling.sample(model, variables, key, 3, method='naive')
  np.testing.assert_array_equal(np.asarray(cached), np.asarray(naive))
  # The samples are not a constant image, so the equality above says something.
  assert len(np.unique(np.asarray(cached))) > 1


@pytest.mark.parametrize(CASE_ARGS, CASES)
def test_cached_logits_equal_forward_pass(
  tiny_config, name, channels, levels, scan, skip, residual, dtype
):
  """Teacher forcing through the caches reproduces model.apply at every sub-pixel."""
  model, variables = _build(tiny_config, name, channels, levels, scan, skip, residual, dtype)
  images = _random_images(model, 2, seed=3)
  expected = _forward(model)(variables, images.astype(jnp.float32))
  got = sampling.cached_logits(model, variables, images)
  assert got.shape == expected.shape
  np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-4)


def test_two_hidden_head_layers(tiny_config):
  """The other reading of the paper's output layers: cached still equals naive."""
  model, variables = _build(tiny_config, 'row_lstm', 3, 256, False, True, True, out_hidden_layers=2)
  head = variables['params']['head']
  assert sorted(head) == ['hidden', 'hidden_1', 'logits']
  images = _random_images(model, 2, seed=3)
  expected = _forward(model)(variables, images.astype(jnp.float32))
  got = sampling.cached_logits(model, variables, images)
  np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-4)
  key = jax.random.key(7)
  cached = sampling.sample(model, variables, key, 3, method='cached')
  naive = sampling.sample(model, variables, key, 3, method='naive')
  np.testing.assert_array_equal(np.asarray(cached), np.asarray(naive))


@pytest.mark.parametrize(CASE_ARGS, CASES)
def test_every_masked_kernel_prepared_once(
  tiny_config, name, channels, levels, scan, skip, residual, dtype
):
  """The sampling loops read every masked convolution's kernel from layers.PREPARED
  (masked and cast ahead of the loops); a saved model never holds that collection."""
  model, variables = _build(tiny_config, name, channels, levels, scan, skip, residual, dtype)
  assert set(
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, SIZE, SIZE, channels)))
  ) == {'params'}

  def kernel_paths(tree):
    return {
      tuple(str(k.key) for k in path[:-1])
      for path, _ in jax.tree_util.tree_leaves_with_path(tree)
      if path[-1].key == 'kernel'
    }

  # Every MaskedConv2D the training forward pass runs, by module path.
  masked = set()

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, layers.MaskedConv2D):
      masked.add(tuple(context.module.path))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(model.apply, variables, jnp.zeros((1, SIZE, SIZE, channels)))
  in_block = lambda p: p[0] == 'blocks' or p[0].startswith('block_')
  top, blocks = jax.eval_shape(
    lambda v: (lambda n: (n.variables, n.block_vars))(sampling_cache.CachedNetwork(model, v)),
    variables,
  )
  assert kernel_paths(top[layers.PREPARED]) == {p for p in masked if not in_block(p)}
  assert len(blocks) == model.cfg.num_layers
  for prepared in blocks:
    assert kernel_paths(prepared[layers.PREPARED]) == {p[1:] for p in masked if in_block(p)}
  assert any(in_block(p) for p in masked)


def test_bfloat16_close_to_naive(tiny_config):
  model, variables = _build(tiny_config, 'row_lstm', 3, 256, True, True, True, 'bfloat16')
  images = _random_images(model, 2, seed=4)
  expected = np.asarray(_forward(model)(variables, images.astype(jnp.float32)))
  got = np.asarray(sampling.cached_logits(model, variables, images))
  # bfloat16 keeps 8 bits of mantissa; the summation order differs between the paths.
  np.testing.assert_allclose(got, expected, atol=0.02 * np.abs(expected).max())
  key = jax.random.key(8)
  cached = np.asarray(sampling.sample(model, variables, key, 3, method='cached'))
  naive = np.asarray(sampling.sample(model, variables, key, 3, method='naive'))
  assert np.mean(cached != naive) <= 0.02


@pytest.mark.parametrize(
  'name, channels, levels, layout',
  [
    pytest.param('row_lstm', 1, 2, 'top_half', id='row_lstm_top_half'),
    pytest.param('diagonal_bilstm', 3, 256, 'random', id='diagonal_subpixels'),
    pytest.param('pixelcnn', 3, 256, 'random', id='pixelcnn_subpixels'),
    pytest.param('gated_pixelcnn', 3, 256, 'random', id='gated_subpixels'),
  ],
)
def test_known_subpixels_kept_and_conditioned_on(tiny_config, name, channels, levels, layout):
  model, variables = _build(tiny_config, name, channels, levels)
  prefix = np.asarray(_random_images(model, 3, seed=5))
  if layout == 'top_half':
    mask = np.zeros(prefix.shape, bool)
    mask[:, : SIZE // 2] = True
  else:  # Arbitrary known sub-pixels, including G or B known while R is not.
    mask = np.random.RandomState(0).rand(*prefix.shape) < 0.5
  key = jax.random.key(9)
  outs = {}
  for method in sampling.METHODS:
    out = np.asarray(
      sampling.sample(model, variables, key, 3, method=method, prefix=prefix, prefix_mask=mask)
    )
    np.testing.assert_array_equal(out[mask], prefix[mask])
    outs[method] = out
  # The naive sampler conditions on the known values by construction; the cached one
  # must draw exactly the same unknown sub-pixels.
  np.testing.assert_array_equal(outs['cached'], outs['naive'])
  # Conditioning matters: unconditional samples with the same key differ.
  free = np.asarray(sampling.sample(model, variables, key, 3, method='cached'))
  assert not np.array_equal(free[~mask], outs['cached'][~mask])


def test_fully_known_prefix_is_returned(tiny_config):
  model, variables = _build(tiny_config, 'pixelcnn', 1, 2)
  prefix = np.asarray(_random_images(model, 3, seed=6))
  out = sampling.sample(
    model,
    variables,
    jax.random.key(0),
    3,
    prefix=prefix,
    prefix_mask=np.ones(prefix.shape[1:], bool),
  )
  np.testing.assert_array_equal(np.asarray(out), prefix)


@pytest.mark.parametrize(
  'name, channels, levels',
  [
    pytest.param('diagonal_bilstm', 1, 2, id='binary'),
    pytest.param('pixelcnn', 3, 256, id='rgb'),
  ],
)
def test_dtype_shape_range(tiny_config, name, channels, levels):
  model, variables = _build(tiny_config, name, channels, levels)
  out = sampling.sample(model, variables, jax.random.key(1), 3)
  assert out.dtype == jnp.uint8
  assert out.shape == (3, SIZE, SIZE, channels)
  assert int(out.max()) < levels
  if levels == 2:
    assert set(np.unique(np.asarray(out))) == {0, 1}


@pytest.mark.parametrize(
  'name, channels, levels',
  [
    pytest.param('row_lstm', 3, 256, id='row_lstm'),
    pytest.param('diagonal_bilstm', 1, 2, id='diagonal'),
  ],
)
def test_zero_temperature_is_greedy(tiny_config, name, channels, levels):
  """T = 0 picks argmax of the model's own logits: a fixed point of the forward pass."""
  model, variables = _build(tiny_config, name, channels, levels)
  greedy = sampling.sample(model, variables, jax.random.key(1), 3, temperature=0.0)
  logits = _forward(model)(variables, greedy.astype(jnp.float32))
  np.testing.assert_array_equal(np.asarray(jnp.argmax(logits, axis=-1)), np.asarray(greedy))
  # Greedy decoding ignores the key and the batch index.
  other = sampling.sample(model, variables, jax.random.key(2), 3, temperature=0.0)
  np.testing.assert_array_equal(np.asarray(other), np.asarray(greedy))
  np.testing.assert_array_equal(np.asarray(greedy[0]), np.asarray(greedy[1]))
  # A small temperature is near-greedy; T = 1 is not.
  cold = sampling.sample(model, variables, jax.random.key(3), 3, temperature=1e-5)
  np.testing.assert_array_equal(np.asarray(cold), np.asarray(greedy))
  warm = sampling.sample(model, variables, jax.random.key(3), 3, temperature=1.0)
  assert not np.array_equal(np.asarray(warm), np.asarray(greedy))


def test_naive_zero_temperature_matches_cached(tiny_config):
  model, variables = _build(tiny_config, 'pixelcnn', 3, 256)
  cached = sampling.sample(model, variables, jax.random.key(1), 3, temperature=0.0)
  naive = sampling.sample(model, variables, jax.random.key(1), 3, 'naive', 0.0)
  np.testing.assert_array_equal(np.asarray(cached), np.asarray(naive))


def test_bad_arguments_raise_one_clear_error(tiny_config):
  model, variables = _build(tiny_config, 'row_lstm', 1, 2)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match='method'):
    sampling.sample(model, variables, key, 1, method='fast')
  with pytest.raises(ValueError, match='temperature'):
    sampling.sample(model, variables, key, 1, temperature=-1.0)
  with pytest.raises(ValueError, match='prefix has shape'):
    sampling.sample(
      model,
      variables,
      key,
      2,
      prefix=np.zeros((1, SIZE, SIZE, 1)),
      prefix_mask=np.ones((1, SIZE, SIZE, 1), bool),
    )
  with pytest.raises(ValueError, match='prefix_mask'):
    sampling.sample(model, variables, key, 1, prefix=np.zeros((1, SIZE, SIZE, 1)))
  with pytest.raises(ValueError, match='Known prefix values'):
    sampling.sample(
      model,
      variables,
      key,
      1,
      prefix=np.full((1, SIZE, SIZE, 1), 2),
      prefix_mask=np.ones((1, SIZE, SIZE, 1), bool),
    )


def test_missing_or_empty_workdir_is_one_clear_error(tmp_path):
  root = str(tmp_path)
  with pytest.raises(checkpointing.CheckpointError, match='does not exist'):
    runs.restore_run(f'{root}/nowhere')
  with pytest.raises(checkpointing.CheckpointError, match='no config.json'):
    runs.restore_run(root)
  with open(f'{root}/config.json', 'w') as f:
    f.write('{}')
  with pytest.raises(checkpointing.CheckpointError, match='no checkpoint'):
    runs.restore_run(root)
  assert os.listdir(root) == ['config.json']  # Nothing created.


def test_completion_grid_rows():
  originals = np.random.RandomState(0).randint(0, 2, (2, 4, 4, 1))
  mask = np.zeros(originals.shape, bool)
  mask[:, :2] = True
  grid = sample_cli.completion_grid(mask, 1 - originals, originals, num_levels=2)
  assert grid.shape == (3 * 5 + 1, 2 * 5 + 1, 3)
  np.testing.assert_array_equal(grid[3:5, 1:5], np.broadcast_to(sample_cli.OCCLUDED_RGB, (2, 4, 3)))
  np.testing.assert_array_equal(grid[11:15, 1:5, 0], originals[0, ..., 0] * 255)
  np.testing.assert_array_equal(grid[6:10, 1:5, 0], (1 - originals[0, ..., 0]) * 255)


@pytest.mark.parametrize(
  'name, channels, levels, scan, skip',
  [
    ('row_lstm', 3, 256, False, True),
    ('diagonal_bilstm', 1, 2, True, False),
    ('pixelcnn', 3, 256, True, True),
    ('gated_pixelcnn', 3, 256, False, False),
  ],
)
def test_class_conditional_cached_equals_naive(tiny_config, name, channels, levels, scan, skip):
  """The class enters every layer of both forms: cached == naive given labels, teacher
  forcing through the caches is the forward pass, and completion is conditioned too."""
  model, variables = _build(tiny_config, name, channels, levels, scan, skip, classes=4)
  labels = np.array([3, 0, 2])
  key = jax.random.key(5)
  cached = sampling.sample(model, variables, key, 3, method='cached', labels=labels)
  naive = sampling.sample(model, variables, key, 3, method='naive', labels=labels)
  np.testing.assert_array_equal(np.asarray(cached), np.asarray(naive))
  assert len(np.unique(np.asarray(cached))) > 1
  images = _random_images(model, 3, seed=4)
  expected = model.apply(variables, images.astype(jnp.float32), labels_B=labels)
  got = sampling.cached_logits(model, variables, images, labels=jnp.asarray(labels))
  np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-4)
  other = model.apply(variables, images.astype(jnp.float32), labels_B=labels[::-1])
  assert float(jnp.abs(other[0] - expected[0]).max()) > 1e-3  # The class matters.
  prefix = np.asarray(_random_images(model, 3, seed=6))
  mask = np.zeros(prefix.shape, bool)
  mask[:, :2] = True
  done = [
    np.asarray(
      sampling.sample(
        model, variables, key, 3, method=m, prefix=prefix, prefix_mask=mask, labels=labels
      )
    )
    for m in ('cached', 'naive')
  ]
  np.testing.assert_array_equal(done[0], done[1])
  np.testing.assert_array_equal(done[0][:, :2], prefix[:, :2])


def test_bad_labels_are_one_clear_error(tiny_config):
  conditional, cond_vars = _build(tiny_config, 'pixelcnn', 1, 2, classes=4)
  plain, plain_vars = _build(tiny_config, 'pixelcnn', 1, 2)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match='class-conditional .num_classes=4.: give labels'):
    sampling.sample(conditional, cond_vars, key, 2)
  with pytest.raises(ValueError, match=r'labels must lie in \[0, 4\)'):
    sampling.sample(conditional, cond_vars, key, 2, labels=[0, 4])
  with pytest.raises(ValueError, match='labels must be 2 integer classes'):
    sampling.sample(conditional, cond_vars, key, 2, labels=[0, 1, 2])
  with pytest.raises(ValueError, match='not class-conditional'):
    sampling.sample(plain, plain_vars, key, 2, labels=[0, 1])
  with pytest.raises(ValueError, match='give labels'):
    conditional.apply(cond_vars, jnp.zeros((1, SIZE, SIZE, 1)))
