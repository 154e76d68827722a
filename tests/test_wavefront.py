"""The layer wavefront (config.model.wavefront, models/wavefront.py) is the layer-by-layer
network on another schedule: the same parameter tree, the same outputs and gradients to
float32 rounding, and cached sampling still equals naive sampling on it. Its causality is
checked in tests/test_causality.py with the other networks.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixel_jax import losses
from pixel_jax import models
from pixel_jax import sampling
from pixel_jax.models import wavefront

SIZE = 6
# Blocks per network: the Diagonal BiLSTM wavefront keeps 3 blocks' buffers (a ring of
# slots, block b in slot b % 3), so its networks have 4 blocks, one of them reusing a slot.
LAYERS = {'row_lstm': 3, 'diagonal_bilstm': 4}


def _random_like(shapes, seed):
  """N(0, 0.5^2) leaves of the given shapes: non-zero initial states and biases too, so
  every path counts (no init compile)."""
  rs = np.random.RandomState(seed)
  return jax.tree.map(lambda a: jnp.asarray(0.5 * rs.standard_normal(a.shape), jnp.float32), shapes)


@functools.lru_cache(maxsize=None)
def _pair(tiny_config, core, scan, skip, classes):
  """(layer-by-layer model, wavefront model, the first one's random variables)."""
  config = tiny_config(
    core,
    channels=3,
    levels=256,
    size=SIZE,
    num_layers=LAYERS[core],
    hidden_channels=6,
    out_hidden_channels=9,
    scan_layers=scan,
    skip=skip,
    num_classes=classes,
  )
  layered = models.get_model(config)
  config.model.wavefront = True
  front = models.get_model(config)
  labels = jnp.zeros((1,), jnp.int32) if classes else None
  images = jnp.zeros((1, SIZE, SIZE, 3))
  shapes = [
    jax.eval_shape(functools.partial(m.init, labels_B=labels), jax.random.key(0), images)
    for m in (layered, front)
  ]
  # One parameter tree: a checkpoint of either schedule loads into the other.
  assert jax.tree.structure(shapes[1]) == jax.tree.structure(shapes[0])
  assert jax.tree.map(jnp.shape, shapes[1]) == jax.tree.map(jnp.shape, shapes[0])
  return layered, front, _random_like(shapes[0], 1)


@pytest.mark.parametrize(
  'core, scan, skip, classes',
  [
    pytest.param(core, *case, id=f'{core}_{name}')
    for core in models.WAVEFRONT_CORES
    for name, case in (('scanned_skip_classes', (True, True, 3)), ('unrolled', (False, False, 0)))
  ],
)
def test_same_outputs_and_gradients(tiny_config, core, scan, skip, classes):
  layered, front, variables = _pair(tiny_config, core, scan, skip, classes)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (2, SIZE, SIZE, 3)), jnp.float32)
  labels = jnp.array([1, 2], jnp.int32) if classes else None

  def loss(model, params):
    logits = model.apply({'params': params}, images, labels_B=labels)
    return losses.nll_per_image(logits, images).mean(), logits

  def grads(model):
    return jax.jit(jax.value_and_grad(functools.partial(loss, model), has_aux=True))(
      variables['params']
    )

  (loss_a, logits_a), grad_a = grads(layered)
  (loss_b, logits_b), grad_b = grads(front)
  np.testing.assert_allclose(logits_b, logits_a, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(loss_b, loss_a, rtol=1e-6)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grad_a), jax.tree.leaves(grad_b)):
    scale = float(jnp.abs(a).max()) + 1e-6
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * scale, err_msg=str(path))


@pytest.mark.parametrize('core', models.WAVEFRONT_CORES)
def test_cached_sampling_equals_naive(tiny_config, core):
  """The cached sampler runs the one-position form; the naive one runs the wavefront."""
  _, front, variables = _pair(tiny_config, core, False, False, 0)
  key = jax.random.key(3)
  cached = sampling.sample(front, variables, key, 2, method='cached')
  naive = sampling.sample(front, variables, key, 2, method='naive')
  np.testing.assert_array_equal(cached, naive)


@pytest.mark.parametrize(
  'core, expected_steps',
  # Row LSTM: H + L - 1 rows. Diagonal BiLSTM: (W + H - 1) skewed columns, each block
  # W columns behind the one below.
  [('row_lstm', SIZE + 3 - 1), ('diagonal_bilstm', (2 * SIZE - 1) + (4 - 1) * SIZE)],
)
def test_one_scan_of_few_steps(tiny_config, core, expected_steps):
  """The wavefront's forward pass is one scan, of wavefront.steps(cfg) steps."""
  _, front, variables = _pair(tiny_config, core, True, True, 3)
  jaxpr = jax.make_jaxpr(front.apply)(
    variables, jnp.zeros((1, SIZE, SIZE, 3)), labels_B=jnp.zeros((1,), jnp.int32)
  ).jaxpr
  lengths = []

  def visit(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == 'scan':
        lengths.append(eqn.params['length'])
      for value in eqn.params.values():
        inner = getattr(value, 'jaxpr', value)
        if hasattr(inner, 'eqns'):
          visit(inner)

  visit(jaxpr)
  assert lengths == [expected_steps] == [wavefront.steps(front.cfg)]
