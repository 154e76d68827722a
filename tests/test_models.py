"""Networks end to end: init loss, exact NLL, config errors, meshes, embedding in user code."""

import math

from flax import nnx
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

from pixel_jax import layers
from pixel_jax import losses
from pixel_jax import models


def random_images(config, n, seed=0):
  d = config.data
  rng = np.random.default_rng(seed)
  shape = (n, d.image_size, d.image_size, d.num_channels)
  return jnp.asarray(rng.integers(0, d.num_levels, shape), jnp.float32)


def test_exact_nll_on_fixed_logits():
  logits = jnp.log(jnp.asarray([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
  logits = logits.reshape(1, 1, 2, 1, 3)  # [B, H, W, C, K]
  images = jnp.asarray([2.0, 0.0]).reshape(1, 1, 2, 1)
  nll = losses.nll_per_image(logits, images)
  np.testing.assert_allclose(nll, [-math.log(0.25) - math.log(0.1)], rtol=1e-6)
  np.testing.assert_allclose(
    losses.bits_per_dim(nll, 2), (math.log2(4) + math.log2(10)) / 2, rtol=1e-6
  )


def test_nll_is_stable_for_huge_logits():
  logits = jnp.asarray([1e4, -1e4, 0.0]).reshape(1, 1, 1, 1, 3)
  nll = losses.nll_per_image(logits, jnp.zeros((1, 1, 1, 1)))
  assert np.isfinite(nll).all()
  np.testing.assert_allclose(nll, 0.0, atol=1e-6)
  nll = losses.nll_per_image(logits, jnp.ones((1, 1, 1, 1)))
  np.testing.assert_allclose(nll, 2e4, rtol=1e-6)


def test_binary_head_is_bernoulli():
  head = layers.OutputHead(num_channels=1, num_levels=2, hidden_channels=4)
  x = jax.random.normal(jax.random.key(0), (1, 2, 2, 4))
  v = head.init(jax.random.key(1), x)
  logits = head.apply(v, x)
  np.testing.assert_array_equal(logits[..., 0], 0.0)  # One free logit per pixel.
  p1 = jax.nn.softmax(logits)[..., 1]
  np.testing.assert_allclose(p1, jax.nn.sigmoid(logits[..., 1]), rtol=1e-6)


@pytest.mark.parametrize('channels, levels', [(1, 2), (3, 256)])
@pytest.mark.parametrize('name', models.MODEL_NAMES)
def test_initial_loss_near_log_levels(tiny_config, name, channels, levels):
  config = tiny_config(name, channels=channels, levels=levels, scan_layers=True)
  model = models.get_model(config)
  images = random_images(config, 4)
  variables = model.init(jax.random.key(0), images)
  logits = model.apply(variables, images)
  assert logits.shape == (*images.shape, levels)
  per_subpixel = losses.nll_per_image(logits, images).mean() / np.prod(images.shape[1:])
  assert float(per_subpixel) == pytest.approx(math.log(levels), abs=0.1 * math.log(levels))


@pytest.mark.parametrize(
  'field, value, message',
  [
    ('image_size', 6, 'config.data.image_size'),
    ('num_channels', 3, 'config.data.num_channels'),
  ],
)
def test_input_that_does_not_match_config(tiny_config, field, value, message):
  config = tiny_config()
  model = models.get_model(config)
  wrong = tiny_config()
  wrong.data[field] = value
  with pytest.raises(ValueError, match=message):
    model.init(jax.random.key(0), random_images(wrong, 1))


def train_step_loss(config, mesh, images):
  """One jitted SGD step on `mesh`; returns the loss after the step."""
  model = models.get_model(config)
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P('data'))
  params = jax.jit(model.init, out_shardings=replicated)(jax.random.key(0), images[:1])
  images = jax.device_put(images, batch_sharding)
  opt = optax.sgd(0.1)

  def loss_fn(p, x):
    return losses.nll_per_image(model.apply(p, x), x).mean()

  @jax.jit
  def step(p, opt_state, x):
    loss, grads = jax.value_and_grad(loss_fn)(p, x)
    updates, opt_state = opt.update(grads, opt_state)
    return optax.apply_updates(p, updates), opt_state, loss

  params, opt_state, _ = step(params, opt.init(params), images)
  return float(jax.jit(loss_fn)(params, images))


@pytest.mark.parametrize('name', models.MODEL_NAMES)
def test_eight_devices_match_one(tiny_config, name):
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  config = tiny_config(name, channels=3, levels=16, size=6, scan_layers=True)
  images = random_images(config, 8)
  one = train_step_loss(config, jax.make_mesh((1,), ('data',), devices=jax.devices()[:1]), images)
  eight = train_step_loss(config, jax.make_mesh((8,), ('data',)), images)
  assert np.isfinite(one)
  np.testing.assert_allclose(one, eight, rtol=2e-5)


class UserModel(nn.Module):
  """A user's own Flax model built from pixel_jax layers: a tiny Row LSTM + Diagonal
  BiLSTM PixelRNN over binary images."""

  @nn.compact
  def __call__(self, images):
    x = layers.scale_input(images, 2)
    x = layers.MaskedConv2D(8, (5, 5), 'A')(x)
    x = x + layers.MaskedConv2D(8)(layers.RowLSTM(hidden=4)(x))
    x = x + layers.MaskedConv2D(8)(layers.DiagonalBiLSTM(hidden=4)(x))
    return layers.OutputHead(num_channels=1, num_levels=2, hidden_channels=8)(x)


def _adam_losses(apply_loss, params, steps=30):
  """The loss at each of `steps` Adam steps on apply_loss(params)."""
  opt = optax.adam(1e-2)
  opt_state = opt.init(params)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(apply_loss)(params)
    updates, opt_state = opt.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  history = []
  for _ in range(steps):
    params, opt_state, loss = step(params, opt_state)
    history.append(float(loss))
  return history


@pytest.mark.slow
def test_user_linen_model_trains():
  images = (jax.random.uniform(jax.random.key(0), (4, 6, 6, 1)) > 0.7).astype(jnp.float32)
  model = UserModel()
  params = model.init(jax.random.key(1), images)
  history = _adam_losses(
    lambda p: losses.nll_per_image(model.apply(p, images), images).mean(), params
  )
  assert history[-1] < 0.8 * history[0]


@pytest.mark.slow
def test_nnx_model_embeds_layers_through_bridge():
  images = (jax.random.uniform(jax.random.key(0), (4, 6, 6, 1)) > 0.7).astype(jnp.float32)

  class NNXModel(nnx.Module):
    def __init__(self, rngs):
      self.core = nnx.bridge.ToNNX(UserModel(), rngs=rngs)
      nnx.bridge.lazy_init(self.core, images)
      self.temperature = nnx.Param(jnp.ones(()))

    def __call__(self, x):
      return self.core(x) / self.temperature

  model = NNXModel(nnx.Rngs(0))
  assert 'core' in nnx.state(model, nnx.Param)
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    loss_fn = lambda m: losses.nll_per_image(m(images), images).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  history = [float(step(model, optimizer)) for _ in range(60)]
  assert history[-1] < 0.8 * history[0]
