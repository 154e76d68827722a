"""The optimiser and learning-rate schedule of an experiment config (config.optim).

RMSProp is the paper's optimiser (docs/design.md section 6; the paper gives no hyper-parameters).
Our RMSProp uses decay 0.95 and a bias-corrected second moment: without the correction the
zero-initialised accumulator makes the first updates ~4x the learning rate, which is what
usually blows up early LSTM training. Adam is the choice of most public code.
"""

import ml_collections
import optax

OPTIMIZERS = ('rmsprop', 'adam')
SCHEDULES = ('constant', 'cosine')
RMSPROP_DECAY = 0.95
EPS = 1e-8


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warmup from 0 to config.optim.learning_rate, then constant or cosine to 0."""
  o = config.optim
  lr, warmup = float(o.learning_rate), int(o.warmup_steps)
  if o.schedule == 'cosine':
    decay_steps = max(int(config.train.num_steps), warmup + 1)
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, decay_steps, end_value=0.0)
  if warmup == 0:
    return optax.constant_schedule(lr)
  return optax.join_schedules(
    [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup]
  )


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Global-norm clipping, then RMSProp or Adam with the schedule (+ decoupled decay).

  The config is assumed valid (pixel_jax.configs.validate).
  """
  o = config.optim
  schedule = make_schedule(config)
  parts = []
  if o.grad_clip_norm > 0:
    # Clipping the global norm keeps one exploding LSTM gradient from wrecking the weights.
    parts.append(optax.clip_by_global_norm(float(o.grad_clip_norm)))
  if o.name == 'rmsprop':
    parts.append(optax.scale_by_rms(decay=RMSPROP_DECAY, eps=EPS, bias_correction=True))
  else:
    parts.append(optax.scale_by_adam(eps=EPS))
  if o.weight_decay > 0:
    parts.append(optax.add_decayed_weights(float(o.weight_decay)))
  parts.append(optax.scale_by_learning_rate(schedule))
  return optax.chain(*parts)
