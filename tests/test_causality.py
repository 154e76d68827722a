"""Causality by Jacobian (docs/design.md section 7): the test that catches mistakes 1-8.

For random weights and input, d logits(r, c, ch) / d image is exactly zero at (r, c, ch'
>= ch) and at every later pixel, and non-zero exactly where the reference receptive field
(tests/receptive_field.py, written independently from docs/design.md) says the model sees.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixel_jax import layers
from pixel_jax import models
import receptive_field

H = W = 6


def perturb(variables, seed):
  """Adds independent noise to every parameter: non-zero biases and initial states, so no
  path is silenced by a zero initialisation."""
  leaves, treedef = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  leaves = [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  return jax.tree.unflatten(treedef, leaves)


def dependency_pattern(config, seed=0, num_images=4, label=None):
  """|d logits / d image| > 0 as a bool array [H, W, C (out), H, W, C (in)].

  A dependency counts if it shows for any of `num_images` random images: a ReLU that
  happens to be off for one input must not hide a path the model has. `label`: the class
  given to a class-conditional model.
  """
  model = models.get_model(config)
  c, k = config.data.num_channels, config.data.num_levels
  rng = np.random.default_rng(seed)
  images = jnp.asarray(rng.uniform(0, k - 1, (num_images, 1, H, W, c)), jnp.float32)
  labels = None if label is None else jnp.array([label], jnp.int32)
  variables = jax.jit(model.init)(jax.random.key(seed), images[0], labels_B=labels)
  variables = perturb(variables, seed)
  proj = jnp.asarray(rng.normal(size=(k,)), jnp.float32)  # Keeps every level's logit.

  def f(x):
    return model.apply(variables, x, labels_B=labels)[0] @ proj  # [H, W, C]

  # Compiled once: op-by-op dispatch of the unrolled scans costs ~3x the CPU time.
  jac = jax.jit(jax.vmap(jax.jacfwd(f)))(images)[..., 0, :, :, :]  # [N, H, W, C, H, W, C]
  return (np.abs(np.asarray(jac)) > 0).any(axis=0)


def expected_pattern(name, channels, num_layers):
  return receptive_field.network(name, H, W, channels, num_layers)


def future_mask(channels):
  """True where a dependency would be a leak: same sub-pixel, later colour, later pixel."""
  return ~receptive_field.earlier(H, W, channels)


VARIANTS = {
  'residual': dict(residual=True, skip=False, scan_layers=True),
  'skip': dict(residual=True, skip=True, scan_layers=True),
  'plain_unrolled': dict(residual=False, skip=False, scan_layers=False),
  # The layer wavefront (models/wavefront.py): the same receptive field on another schedule.
  'wavefront_skip': dict(residual=True, skip=True, scan_layers=True, wavefront=True),
  'wavefront_plain_unrolled': dict(residual=False, skip=False, scan_layers=False, wavefront=True),
}
MODEL_CASES = [
  pytest.param(name, ch, variant, id=f'{name}_{ch}ch_{variant}')
  for name in models.MODEL_NAMES
  for ch, variant in ((1, 'residual'), (3, 'residual'), (3, 'skip'), (1, 'plain_unrolled'))
] + [
  pytest.param(name, ch, variant, id=f'{name}_{ch}ch_{variant}')
  for name in models.WAVEFRONT_CORES
  for ch, variant in ((3, 'wavefront_skip'), (1, 'wavefront_plain_unrolled'))
]


@pytest.mark.parametrize('name, channels, variant', MODEL_CASES)
def test_sees_exactly_its_receptive_field(tiny_config, name, channels, variant):
  levels = 2 if channels == 1 else 256
  # The paper's 7x7 first layer (the Diagonal BiLSTM gap below depends on its reach).
  config = tiny_config(
    name,
    channels=channels,
    levels=levels,
    size=H,
    hidden_channels=12,
    out_hidden_channels=12,
    first_kernel_size=7,
    **VARIANTS[variant],
  )
  got = dependency_pattern(config)
  assert not (got & future_mask(channels)).any(), 'the model reads the future'
  np.testing.assert_array_equal(got, expected_pattern(name, channels, 2))


@pytest.mark.parametrize('channels', [1, 3])
def test_diagonal_bilstm_gap_is_only_last_subpixel_of_previous_row(channels):
  """The documented gap: (r, c) never sees the LAST colour of pixel (r-1, W-1) unless
  c is within the 7x7 first layer's reach of the right edge. Earlier colours of that
  pixel do reach it, through the mask-A centre tap of pixel (r-1, W-1) itself."""
  visible = receptive_field.network('diagonal_bilstm', H, W, channels, 2)
  missing = receptive_field.earlier(H, W, channels) & ~visible
  reach = 7 // 2
  for r, c, ch in itertools.product(range(H), range(W), range(channels)):
    gap = {(r - 1, W - 1, channels - 1)} if r > 0 and c < W - 1 - reach else set()
    assert set(map(tuple, np.argwhere(missing[r, c, ch]))) == gap, (r, c, ch)
  # test_sees_exactly_its_receptive_field proves the model's pattern equals `visible`.


def test_row_lstm_triangle_and_pixelcnn_blind_spot():
  """What the two models cannot see, on the reference that the parametrized test above
  proves each 2-layer model equals exactly: pixel (2, 0) misses the top-right corner, an
  earlier pixel outside the Row LSTM's triangle and inside PixelCNN's blind spot, and
  sees the pixel above it; the Diagonal BiLSTM sees the corner."""
  corner = (2, 0, 0, 0, W - 1, 0)
  assert receptive_field.earlier(H, W, 1)[corner]
  for name in ('row_lstm', 'pixelcnn'):
    visible = receptive_field.network(name, H, W, 1, 2)
    assert not visible[corner], name
    assert visible[2, 0, 0, 1, 0, 0], name
  assert receptive_field.network('diagonal_bilstm', H, W, 1, 2)[corner]


@pytest.mark.parametrize('channels', [1, 3])
def test_gated_pixelcnn_sees_every_earlier_subpixel(tiny_config, channels):
  """No blind spot: with 2 layers on a 6x6 image every output sub-pixel depends on every
  earlier sub-pixel, all colours of the pixel above-right and the row's last pixel
  included, and on nothing later. The same reference misses earlier sub-pixels for a
  6-layer PixelCNN here (its blind spot)."""
  levels = 2 if channels == 1 else 256
  config = tiny_config(
    'gated_pixelcnn',
    channels=channels,
    levels=levels,
    size=H,
    hidden_channels=12,
    out_hidden_channels=12,
    first_kernel_size=7,
    **VARIANTS['residual'],
  )
  np.testing.assert_array_equal(
    dependency_pattern(config, seed=1), receptive_field.earlier(H, W, channels)
  )
  assert (
    receptive_field.earlier(H, W, channels)
    & ~receptive_field.network('pixelcnn', H, W, channels, 6)
  ).any()


def test_mask_b_on_first_layer_would_leak():
  """Sanity of the test itself: a model reading its own sub-pixel is caught."""
  model = layers.MaskedConv2D(4, (3, 3), 'B', num_groups=1)
  x = jnp.ones((1, H, W, 1))
  v = model.init(jax.random.key(0), x)
  jac = jax.jacfwd(lambda x: model.apply(v, x)[0].sum(-1))(x)[..., 0, :, :, 0]
  assert (np.abs(np.asarray(jac))[..., None] > 0)[:, :, None, :, :][..., 0][
    future_mask(1)[:, :, 0, :, :, 0][:, :, None]
  ].any()


# The layers alone, with colour groups: a feature of group g at (r, c) reads groups <= g at
# (r, c) and all groups at the earlier positions its recurrence reaches.


@pytest.mark.parametrize('groups', [1, 3])
@pytest.mark.parametrize('layer', ['row_lstm', 'diagonal_bilstm'])
def test_layer(layer, groups):
  features, hidden = 6, 6
  module = {'row_lstm': layers.RowLSTM, 'diagonal_bilstm': layers.DiagonalBiLSTM}[layer](
    hidden=hidden, num_groups=groups
  )
  x = jax.random.normal(jax.random.key(1), (1, H, W, features))
  v = perturb(jax.jit(module.init)(jax.random.key(2), x), 3)
  jac = jax.jit(jax.jacfwd(lambda x: module.apply(v, x)[0]))(x)[..., 0, :, :, :]
  got = np.abs(np.asarray(jac)) > 0  # [H, W, hidden, H, W, features]
  g_out = layers.channel_groups(hidden, groups)
  g_in = layers.channel_groups(features, groups)
  # The input's own features as the "sub-pixels": f[p, g] = {features of group g at p}.
  f = np.zeros((H, W, groups, H, W, features), bool)
  for r, c, g in itertools.product(range(H), range(W), range(groups)):
    f[r, c, g, r, c] = g_in == g
  block = {
    'row_lstm': receptive_field.row_lstm,
    'diagonal_bilstm': receptive_field.diagonal_bilstm,
  }[layer]
  expected = block(f)[:, :, g_out]  # [H, W, hidden, H, W, features]
  np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize('groups', [1, 3])
@pytest.mark.parametrize('mask_type', ['A', 'B'])
@pytest.mark.parametrize('kernel', [(2, 2), (4, 4), (3, 5), (1, 4)])
def test_masked_conv_any_kernel_size(kernel, mask_type, groups):
  conv = layers.MaskedConv2D(3, kernel, mask_type, num_groups=groups)
  x = jax.random.normal(jax.random.key(0), (1, H, W, 3))
  a, b = (kernel[0] - 1) // 2, (kernel[1] - 1) // 2
  if (a, b, mask_type, groups) == (0, 0, 'A', 1):  # Nothing before the centre to read.
    with pytest.raises(ValueError, match='reads nothing'):
      conv.init(jax.random.key(1), x)
    return
  v = perturb(conv.init(jax.random.key(1), x), 1)
  got = np.abs(np.asarray(jax.jacfwd(lambda x: conv.apply(v, x)[0])(x)[..., 0, :, :, :])) > 0
  expected = np.zeros_like(got)  # [H, W, out, H, W, in]
  g_out = layers.channel_groups(3, groups)
  for r, c in itertools.product(range(H), range(W)):
    for i, j in itertools.product(range(kernel[0]), range(kernel[1])):
      rr, cc = r + i - a, c + j - b
      if not (0 <= rr < H and 0 <= cc < W) or (i, j) > (a, b):
        continue
      if (i, j) < (a, b):
        expected[r, c, :, rr, cc, :] = True
      else:
        expected[r, c, :, rr, cc, :] = (g_out[None, :] < g_out[:, None]) | (
          (mask_type == 'B') & (g_out[None, :] == g_out[:, None])
        )
  np.testing.assert_array_equal(got, expected)


def test_fused_gate_mask_is_per_gate():
  """docs/design.md section 7, mistake 4: grouping over the fused 4h block would let R
  gates read G input."""
  mask = layers.conv_mask((1, 1), 3, 4 * 3, 'B', num_groups=3, out_blocks=4)[0, 0]
  for gate in range(4):
    np.testing.assert_array_equal(mask[:, gate * 3 : (gate + 1) * 3], np.tril(np.ones((3, 3))).T)


@pytest.mark.parametrize(
  'name, channels, variant',
  [(name, 3, 'residual') for name in models.MODEL_NAMES] + [('pixelcnn', 1, 'plain_unrolled')],
)
def test_class_conditional_sees_exactly_its_receptive_field(tiny_config, name, channels, variant):
  """The class adds a per-layer bias to every gate pre-activation: the receptive field
  (colours included) is exactly the unconditional one, and the class changes the logits."""
  levels = 2 if channels == 1 else 256
  config = tiny_config(
    name,
    channels=channels,
    levels=levels,
    size=H,
    hidden_channels=12,
    out_hidden_channels=12,
    first_kernel_size=7,
    num_classes=3,
    **VARIANTS[variant],
  )
  got = dependency_pattern(config, label=2)
  assert not (got & future_mask(channels)).any(), 'the model reads the future'
  np.testing.assert_array_equal(got, expected_pattern(name, channels, 2))
  model = models.get_model(config)
  images = jnp.ones((2, H, W, channels))
  variables = perturb(model.init(jax.random.key(0), images, labels_B=jnp.zeros(2, int)), 0)
  logits = model.apply(variables, images, labels_B=jnp.array([0, 1]))[..., -1]
  # The class reaches (nearly) every logit; a position whose head ReLUs are all off for
  # both classes may coincide.
  assert float((jnp.abs(logits[0] - logits[1]) > 0).mean()) > 0.9
