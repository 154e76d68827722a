"""Multi-Scale PixelRNN: causality given the small image, exact joint NLL, training,
two-stage sampling (cached == naive, small image == subsampled full image), the CLI grid.

Tiny random networks (full images of 3-6 pixels a side) with every parameter random, so no
path is silenced by a zero initialisation.
"""

import functools
import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import tiny_multiscale
from pixel_jax import losses
from pixel_jax import metrics_writer
from pixel_jax import models
from pixel_jax import sample as sample_cli
from pixel_jax import sampling
from pixel_jax import train
from pixel_jax.models import multiscale
import receptive_field


def ms_config(tiny_config, core='row_lstm', channels=1, levels=2, size=6, small=3, **model):
  config = tiny_config(
    'multiscale',
    channels=channels,
    levels=levels,
    size=size,
    hidden_channels=6,
    out_hidden_channels=9,
    first_kernel_size=7,
    **model,
  )
  ms = config.model.multiscale
  ms.core = core
  ms.small_size = small
  ms.cond_channels = 4
  ms.upsampler_layers = 2
  ms.small_num_layers = 1
  ms.small_hidden_channels = 6
  return config


@functools.lru_cache(maxsize=None)
def build(
  tiny_config,
  core='row_lstm',
  channels=1,
  levels=2,
  size=6,
  small=3,
  scan=True,
  skip=False,
  classes=0,
):
  """A model and N(0, 0.5^2) variables everywhere (biases and initial states included);
  class-conditional when `classes` > 0."""
  config = ms_config(
    tiny_config,
    core,
    channels,
    levels,
    size,
    small,
    scan_layers=scan,
    skip=skip,
    num_classes=classes,
  )
  model = models.get_model(config)
  labels = jnp.zeros((1,), jnp.int32) if classes else None
  shapes = jax.eval_shape(
    functools.partial(model.init, labels_B=labels),
    jax.random.key(0),
    jnp.zeros((1, size, size, channels)),
  )
  rs = np.random.RandomState(1)
  variables = jax.tree_util.tree_map(
    lambda a: jnp.asarray(0.5 * rs.standard_normal(a.shape), jnp.float32), shapes
  )
  return model, variables


def random_images(model, n, seed):
  shape = (n, model.image_size, model.image_size, model.num_channels)
  return jax.random.randint(jax.random.key(seed), shape, 0, model.num_levels)


@pytest.mark.parametrize(
  'core, channels',
  [('row_lstm', 1), ('row_lstm', 3), ('diagonal_bilstm', 1), ('diagonal_bilstm', 3)],
)
def test_causal_in_full_image_and_sees_whole_small_image(tiny_config, core, channels):
  """d logits / d full image: exactly the single-scale receptive field (never the
  future); d logits / d small image: non-zero from every small pixel at every
  position, the very first sub-pixel included."""
  levels = 2 if channels == 1 else 256
  model, variables = build(tiny_config, core, channels, levels)
  n, s = model.image_size, 3
  rng = np.random.default_rng(0)
  # Float inputs: the Jacobian is taken w.r.t. the scaled levels; 6 draws so a ReLU
  # that is off for one input hides nothing.
  x = jnp.asarray(rng.uniform(0, levels - 1, (6, 1, n, n, channels)), jnp.float32)
  small = jnp.asarray(rng.uniform(0, levels - 1, (6, 1, s, s, channels)), jnp.float32)
  proj = jnp.asarray(rng.normal(size=(levels,)), jnp.float32)

  def f(x, small):
    return model.apply(variables, x, small, method='conditional_logits')[0] @ proj

  jac_x, jac_s = jax.jit(jax.vmap(jax.jacfwd(f, argnums=(0, 1))))(x, small)
  seen_x = (np.abs(np.asarray(jac_x[..., 0, :, :, :])) > 0).any(axis=0)
  seen_s = (np.abs(np.asarray(jac_s[..., 0, :, :, :])) > 0).any(axis=0)
  assert not (seen_x & ~receptive_field.earlier(n, n, channels)).any(), (
    'the conditional network reads the future of the full image'
  )
  np.testing.assert_array_equal(seen_x, receptive_field.network(core, n, n, channels, 2))
  assert seen_s[0, 0, 0].all(), 'the first sub-pixel misses small pixels'
  assert seen_s.all()


def test_joint_nll_is_small_plus_conditional(tiny_config):
  """The joint NLL from the model's logits equals the two stages computed separately:
  the small network on the subsampled image plus the conditional network on the
  sub-pixels that are not stride pixels. (Row LSTM, binary: test_joint_probabilities.)"""
  model, variables = build(tiny_config, 'diagonal_bilstm', 3, 256, scan=False)

  @jax.jit
  def nlls(variables, x):
    p = variables['params']
    small = x[:, ::2, ::2]
    small_nll = losses.nll_per_image(
      model.small_network.apply({'params': p['small_network']}, small), small
    )
    cond = model.upsampler.apply({'params': p['upsampler']}, small)
    logp = losses.log_prob_per_subpixel(
      model.full_network.apply({'params': p['full_network']}, x, cond), x
    )
    conditional_nll = -(logp.sum(axis=(1, 2, 3)) - logp[:, ::2, ::2].sum(axis=(1, 2, 3)))
    joint = losses.nll_per_image(model.apply(variables, x), x)
    parts = model.apply(variables, x, method='nll_parts')
    return small_nll, conditional_nll, joint, parts

  x = random_images(model, 4, seed=1).astype(jnp.float32)
  small_nll, conditional_nll, joint, parts = nlls(variables, x)
  np.testing.assert_allclose(joint, small_nll + conditional_nll, rtol=1e-5)
  np.testing.assert_allclose(parts['small'], small_nll, rtol=1e-5)
  np.testing.assert_allclose(parts['conditional'], conditional_nll, rtol=1e-5)


def test_joint_probabilities_sum_to_one(tiny_config):
  """Exactness: over all 2^9 binary 3x3 images (s = 1), sum_x exp(-NLL(x)) = 1. A
  stride pixel counted in both stages would make the sum smaller."""
  model, variables = build(tiny_config, 'row_lstm', 1, 2, size=3, small=1)
  x = jnp.asarray(list(itertools.product((0, 1), repeat=9)), jnp.float32)
  x = x.reshape(-1, 3, 3, 1)
  nll = losses.nll_per_image(jax.jit(model.apply)(variables, x), x)
  assert float(jax.scipy.special.logsumexp(-nll)) == pytest.approx(0.0, abs=5e-5)


def test_helpers():
  assert multiscale.upsampling_strides(4, 1) == (4,)
  assert multiscale.upsampling_strides(4, 3) == (2, 2, 1)
  assert multiscale.upsampling_strides(12, 2) == (6, 2)
  mask = multiscale.stride_mask(4, 2)
  assert mask.sum() == 4
  assert mask[0, 0] and mask[2, 2] and not mask[0, 1]


@pytest.mark.parametrize(
  'core, channels, levels, scan, skip',
  [('row_lstm', 1, 2, True, True), ('diagonal_bilstm', 3, 256, False, False)],
)
def test_two_stage_cached_equals_naive(tiny_config, core, channels, levels, scan, skip):
  model, variables = build(tiny_config, core, channels, levels, scan=scan, skip=skip)
  key = jax.random.key(7)
  cached = np.asarray(sampling.sample(model, variables, key, 3, method='cached'))
  naive = np.asarray(sampling.sample(model, variables, key, 3, method='naive'))
  np.testing.assert_array_equal(cached, naive)
  assert cached.shape == (3, 6, 6, channels)
  assert cached.dtype == np.uint8
  assert cached.max() < levels
  assert len(np.unique(cached)) > 1
  # The small image of the pair is the small stage's own sample, and the subsampled
  # full image (the stride sub-pixels are fixed to it).
  small = sampling.sample(
    model.small_network,
    {'params': variables['params']['small_network']},
    jax.random.fold_in(key, 0),
    3,
  )
  np.testing.assert_array_equal(multiscale.subsample(cached, 2), np.asarray(small))
  # Completion (same compiled samplers): known sub-pixels are kept in both stages.
  mask = np.zeros(cached.shape, bool)
  mask[:, :3] = True
  prefix = np.asarray(random_images(model, 3, seed=5))
  out = np.asarray(sampling.sample(model, variables, key, 3, prefix=prefix, prefix_mask=mask))
  np.testing.assert_array_equal(out[mask], prefix[mask])
  np.testing.assert_array_equal(
    multiscale.subsample(out, 2)[:, :2], multiscale.subsample(prefix, 2)[:, :2]
  )


def test_cached_logits_with_conditioning_map(tiny_config):
  """Teacher forcing through the caches with the map equals the full network's pass
  (the Diagonal BiLSTM: both directions read the map)."""
  model, variables = build(tiny_config, 'diagonal_bilstm', 1, 2)
  p = variables['params']
  x = random_images(model, 2, seed=3)
  cond = model.apply(variables, x[:, ::2, ::2], method='condition')
  full = {'params': p['full_network']}
  expected = model.full_network.apply(full, x.astype(jnp.float32), cond)
  got = sampling.cached_logits(model.full_network, full, x, cond=cond)
  np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-4)


def test_bad_conditioning_map(tiny_config):
  model, variables = build(tiny_config, 'row_lstm', 1, 2)
  with pytest.raises(ValueError, match='cond has shape'):
    sampling.sample(
      model.full_network,
      {'params': variables['params']['full_network']},
      jax.random.key(0),
      2,
      cond=jnp.zeros((1, 6, 6, 4)),
    )


@pytest.mark.slow
def test_train_evaluate_and_sample_cli(tmp_path):
  """Both stages train from one config: falling joint loss, each stage's NLL in the
  metrics (they sum to the joint), two-stage samples and the (small | full) grid."""
  config = tiny_multiscale.get_config()
  config.train.sample_every = 0  # The CLI below samples (and compiles the samplers) once.
  config.train.checkpoint_every = config.train.eval_every = 30  # Fewer orbax saves.
  _, summary = train.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(summary['train_loss'])
  assert summary['train_loss'] < 0.8 * summary['initial_train_loss']
  parts = summary['eval_nll_nats_small'] + summary['eval_nll_nats_conditional']
  np.testing.assert_allclose(parts, summary['eval_loss'], rtol=1e-5)  # Unit: nats.
  records = metrics_writer.read_jsonl(str(tmp_path / 'metrics.jsonl'))
  evals = [r for r in records if 'eval_loss' in r]
  assert evals and all('eval_nll_nats_conditional' in r for r in evals)
  written = sample_cli.run_sampling(str(tmp_path), num_samples=4, scale=1)
  images = np.load(written['samples.npy'])
  assert images.shape == (4, 8, 8, 1) and set(np.unique(images)) <= {0, 1}
  assert os.path.getsize(written['stages.png']) > 0


@pytest.mark.slow
def test_class_conditional_two_stages(tiny_config):
  """Both stages take the class (the full network beside the small image's map): cached
  == naive, the labels change both stages' NLL, and the caches take map and class."""
  model, variables = build(tiny_config, 'row_lstm', 1, 2, classes=3)
  labels = np.array([2, 0, 1])
  key = jax.random.key(3)
  cached = np.asarray(sampling.sample(model, variables, key, 3, labels=labels))
  naive = np.asarray(sampling.sample(model, variables, key, 3, 'naive', labels=labels))
  np.testing.assert_array_equal(cached, naive)
  x = random_images(model, 3, seed=2).astype(jnp.float32)
  parts = model.apply(variables, x, labels_B=labels, method='nll_parts')
  other = model.apply(variables, x, labels_B=labels[::-1], method='nll_parts')
  for stage in ('small', 'conditional'):
    assert float(jnp.abs(parts[stage] - other[stage]).max()) > 1e-4, stage
  full = {'params': variables['params']['full_network']}
  cond = model.apply(variables, x[:, ::2, ::2], method='condition')
  expected = model.full_network.apply(full, x, cond, labels)
  got = sampling.cached_logits(
    model.full_network, full, x.astype(jnp.int32), cond=cond, labels=jnp.asarray(labels)
  )
  np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-4)
