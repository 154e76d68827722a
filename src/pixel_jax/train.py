"""The training loop: `train_and_evaluate(config, workdir) -> (state, summary)`.

Data parallel on a 1-D ('data',) mesh: the state is replicated, every batch is split over
the devices, and the step (TrainStep: one compiled call, two on CPU; the state donated)
does forward, backward and the optimiser update. The step functions are module-level and
pure; the loop around them only moves batches in, metrics out (one step late, so the next
step is already queued) and runs the periodic work (log, evaluate, checkpoint, sample)
behind one predicate, `itstime`.

The NLL, its units and the evaluation step are evaluation.py's; the state and its layout
train_state.py's; checkpoints checkpointing.py's.
"""

import contextlib
import functools
import os
import sys
import time
from typing import Any, Callable, Iterator, Optional

from absl import logging
import jax
import jax.extend
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from pixel_jax import checkpointing
from pixel_jax import configs
from pixel_jax import evaluation
from pixel_jax import fault_injection
from pixel_jax import image_grid
from pixel_jax import input_pipeline
from pixel_jax import interrupts
from pixel_jax import metrics_writer
from pixel_jax import models
from pixel_jax import optim
from pixel_jax import profiler
from pixel_jax import runs
from pixel_jax import sampling
from pixel_jax import sharding
from pixel_jax import storage
from pixel_jax import train_state
from pixel_jax import workdir as workdir_lib


class TrainingDivergedError(FloatingPointError):
  """The loss or gradients became NaN/inf; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
  """Ctrl-C or SIGTERM stopped training; the message says where a rerun resumes."""


# Errors that main.py reports as one line instead of a traceback.
USER_ERRORS = runs.USER_ERRORS + (
  TrainingDivergedError,
  TrainingInterrupted,
  workdir_lib.WorkdirError,
)


def _all_finite(tree: Any) -> jax.Array:
  return jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]).all()


def loss_and_backward(
  params: Any,
  images_BxHxWxC: jax.Array,
  labels_B: Optional[jax.Array] = None,
  *,
  model: Any,
) -> tuple[jax.Array, Callable]:
  """The mean NLL (nats/image) of a global batch (given its labels for a class-conditional
  model) and its backward pass: a function (a pytree holding the forward's saved values)
  from the loss's cotangent to the parameters' gradient (jax.vjp). Pure.

  Only the saved values the backward pass reads are kept: jax.vjp also saves some it never
  reads (e.g. the zero tangent of every ReLU, an array as large as its input), which a
  compiled call returning them would write out every step.
  """
  loss, backward = jax.vjp(
    lambda p: evaluation.nll_fn(p, images_BxHxWxC, labels_B, model=model).mean(), params
  )
  saved, treedef = jax.tree.flatten(backward)
  jaxpr = jax.make_jaxpr(lambda *s: jax.tree.unflatten(treedef, s)(jnp.ones_like(loss)))(
    *saved
  ).jaxpr
  read = {v for eqn in jaxpr.eqns for v in eqn.invars if isinstance(v, jax.extend.core.Var)}
  read |= {v for v in jaxpr.outvars if isinstance(v, jax.extend.core.Var)}
  kept = tuple(v in read for v in jaxpr.invars)
  unread = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a, k in zip(saved, kept) if not k)
  kept_saved = [a for a, k in zip(saved, kept) if k]
  return loss, jax.tree_util.Partial(
    functools.partial(_backward_of_kept, treedef, kept, unread), *kept_saved
  )


def _backward_of_kept(treedef: Any, kept: tuple[bool, ...], unread: tuple, *args: Any) -> Any:
  """jax.vjp's backward pass from the saved values it reads (`args`, then the cotangent);
  the values it never reads are stood in for by zeros (removed when compiled)."""
  *kept_saved, cotangent = args
  kept_iter, unread_iter = iter(kept_saved), iter(unread)
  saved = []
  for k in kept:
    if k:
      saved.append(next(kept_iter))
    else:
      shape = next(unread_iter)
      saved.append(jnp.zeros(shape.shape, shape.dtype))
  return jax.tree.unflatten(treedef, saved)(cotangent)


def apply_gradients(
  state: train_state.TrainState,
  loss: jax.Array,
  backward: Callable,
  *,
  tx: optax.GradientTransformation,
) -> tuple[train_state.TrainState, dict]:
  """The backward pass of `loss_and_backward` and one optimiser step; pure."""
  (grads,) = backward(jnp.ones_like(loss))
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  grad_norm = optax.tree.norm(grads)
  # One flag for "this step is usable": the loss, the gradient and the new weights.
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & _all_finite(params)
  new_state = train_state.TrainState(step=state.step + 1, params=params, opt_state=opt_state)
  return new_state, {'nll_nats': loss, 'grad_norm': grad_norm, 'finite': finite}


def train_step(
  state: train_state.TrainState,
  images_BxHxWxC: jax.Array,
  labels_B: Optional[jax.Array] = None,
  *,
  model: Any,
  tx: optax.GradientTransformation,
) -> tuple[train_state.TrainState, dict]:
  """One optimiser step on the mean NLL (nats/image) of a global batch (given its labels
  for a class-conditional model): loss_and_backward then apply_gradients; pure."""
  loss, backward = loss_and_backward(state.params, images_BxHxWxC, labels_B, model=model)
  return apply_gradients(state, loss, backward, tx=tx)


class TrainStep:
  """The training step as the loop runs it: (state, batch, labels or None) -> (state,
  metrics), the state replicated and donated, the batch split over the mesh. The
  benchmarks time it.

  On CPU, two compiled calls, `forward` (loss_and_backward) then `update` (apply_gradients),
  rather than one: there a compiled call's temporary buffer is freshly mapped memory every call
  (glibc serves allocations above 32 MB with mmap and unmaps them when freed), and one call
  doing forward, backward and update holds every saved activation in it (129 MB for the
  MNIST PixelCNN: ~31,500 page faults and zeroed pages per step, a third of its CPU time).
  Returned from `forward`, the saved activations are arrays of their own, each small enough
  for malloc to reuse step after step; only `update`'s smaller temporary buffer is mapped
  afresh. Same arithmetic as one call (the loss, gradients and update are unchanged).
  Accelerators allocate from a pool held for the whole run, so there the step stays ONE
  compiled call (`one_call`, which XLA may fuse across the forward/backward boundary).

  `trace` and `lower` give `train_step` as one compiled call on the same shardings, for
  analysis (XLA's FLOP count and buffer sizes of the whole step).
  """

  def __init__(self, model: Any, tx: optax.GradientTransformation, mesh: jax.sharding.Mesh):
    rep = sharding.replicated(mesh)
    batch = sharding.batch_sharding(mesh)
    self.forward = jax.jit(
      functools.partial(loss_and_backward, model=model), in_shardings=(rep, batch, batch)
    )
    self.update = jax.jit(
      functools.partial(apply_gradients, tx=tx), out_shardings=(rep, rep), donate_argnums=(0,)
    )
    self.one_call = jax.jit(
      functools.partial(train_step, model=model, tx=tx),
      in_shardings=(rep, batch, batch),
      out_shardings=(rep, rep),
      donate_argnums=(0,),
    )
    self.trace = self.one_call.trace
    self.lower = self.one_call.lower
    self.split = all(device.platform == 'cpu' for device in mesh.devices.flat)

  def __call__(
    self,
    state: train_state.TrainState,
    images_BxHxWxC: jax.Array,
    labels_B: Optional[jax.Array] = None,
  ) -> tuple[train_state.TrainState, dict]:
    if not self.split:
      return self.one_call(state, images_BxHxWxC, labels_B)
    loss, backward = self.forward(state.params, images_BxHxWxC, labels_B)
    return self.update(state, loss, backward)


def make_train_step(
  model: Any, tx: optax.GradientTransformation, mesh: jax.sharding.Mesh
) -> TrainStep:
  """The training loop's step (TrainStep)."""
  return TrainStep(model, tx, mesh)


def itstime(
  step: int, every: int, last_step: int, first_step: int = 0, at_end: bool = True
) -> bool:
  """Whether periodic work runs after `step` (every `every` steps, and at the end)."""
  if every <= 0 or step <= first_step:
    return False
  return step % every == 0 or (at_end and step == last_step)


def due_work(step: int, t: ml_collections.ConfigDict) -> dict[str, bool]:
  """The periodic work after `step`: 'checkpoint', 'eval' (with the best-checkpoint update)
  and 'sample' every so many steps; the last step is always checkpointed and evaluated."""
  last = step == t.num_steps
  return {
    'checkpoint': itstime(step, t.checkpoint_every, t.num_steps) or last,
    'eval': itstime(step, t.eval_every, t.num_steps) or last,
    'sample': itstime(step, t.sample_every, t.num_steps),
  }


def sample_path(workdir: str, step: int) -> str:
  return os.path.join(workdir, 'samples', f'step_{step}.png')


def unfinished_work(
  config: ml_collections.ConfigDict,
  workdir: str,
  step: int,
  history: list[dict],
  best_step: Optional[int],
) -> list[str]:
  """What a run resumed at `step` must still do for that step, because the run before it
  stopped after the checkpoint of `step` but before the rest of its work.

  'eval' (no evaluation record; the best-checkpoint update follows it), 'best' (the record
  is there, the best checkpoint was not updated), 'sample' (no sample grid) and 'final'
  (the run's last step, without its final record). `history` is metrics.jsonl up to `step`.
  """
  if step == 0:
    return []
  due = due_work(step, config.train)
  evals = {r['step']: r['eval_loss'] for r in history if 'eval_loss' in r}
  todo = []
  if due['eval']:
    if step not in evals:
      todo.append('eval')
    elif best_step is None or (
      best_step < step and evals[step] < evals.get(best_step, float('inf'))
    ):
      todo.append('best')
  if due['sample'] and not storage.path(sample_path(workdir, step)).exists():
    todo.append('sample')
  if step == config.train.num_steps and not any(
    'final_eval_loss' in r and r['step'] == step for r in history
  ):
    todo.append('final')
  return todo


def restore_or_init(
  config: ml_collections.ConfigDict,
  workdir: str,
  ckpt: checkpointing.Checkpointer,
  model: Any,
  tx: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
  target: Any,
) -> tuple[train_state.TrainState, int]:
  """(state, step): the newest good checkpoint of workdir, else a fresh state at step 0.

  Corrupt checkpoints are set aside by the checkpointer (one warning each). A checkpoint of
  another optimiser (config.optim.name or grad_clip_norm changed) keeps its parameters and
  step; the optimiser state starts afresh, and a warning says so.
  """
  if ckpt.latest_step() is None:
    return train_state.init_state(config, model, tx, mesh), 0
  try:
    state, step = ckpt.restore(target)
  except checkpointing.OptimizerChangedError:
    step = ckpt.steps()[-1]
    params = ckpt.restore_params(target.params, step)
    opt_state = jax.jit(
      tx.init, out_shardings=jax.tree.map(lambda s: s.sharding, target.opt_state)
    )(params)
    state = train_state.TrainState(
      step=jax.device_put(jnp.asarray(step, jnp.int32), target.step.sharding),
      params=params,
      opt_state=opt_state,
    )
    changes = checkpointing.optimizer_changes(workdir, config) or ['optimizer changed']
    logging.warning(
      '%s: the optimizer state is reset, parameters kept (step %d).', '; '.join(changes), step
    )
  except checkpointing.CheckpointError:
    if ckpt.latest_step() is not None:
      raise
    logging.warning('Starting from step 0: no usable checkpoint is left in %s.', ckpt.latest_dir)
    return train_state.init_state(config, model, tx, mesh), 0
  ckpt.drop_steps_beyond_keep()
  logging.info('Resumed from %s at step %d.', ckpt.latest_dir, step)
  return state, step


def write_samples(
  config: ml_collections.ConfigDict,
  model: Any,
  params: Any,
  step: int,
  workdir: str,
  writer: Optional[metrics_writer.MetricsWriter] = None,
) -> str:
  """Draws config.sample.num_samples images and saves workdir/samples/step_N.png.

  A class-conditional model draws classes 0, 1, ..., K-1, 0, 1, ... in turn.
  Returns the PNG path.
  """
  rng = jax.random.fold_in(jax.random.key(config.seed + 1), step)
  n, k = config.sample.num_samples, config.model.num_classes
  images = sampling.sample(
    model,
    {'params': params},
    rng,
    n,
    method=config.sample.method,
    temperature=config.sample.temperature,
    labels=np.arange(n) % k if k else None,
  )
  grid = image_grid.make_grid(np.asarray(jax.device_get(images)), config.data.num_levels)
  path = sample_path(workdir, step)
  if jax.process_index() == 0:
    image_grid.save_png(path, grid, scale=2)
    if writer is not None:
      writer.write_image(step, 'samples', grid)
  return path


# ----------------------------------------------------------------------------------------
# The loop.

# Fields of metrics.jsonl that are timings: they differ between runs of the same config
# (machine, load, interruptions), everything else is reproducible.
TIMING_METRICS = ('images_per_s', 'train_time_s', 'wall_time_s')


class TrainClock:
  """The run's elapsed time in every metrics record: `train_time_s` and `wall_time_s`.

  train_time_s: seconds of the training loop, the steps and their batches (the first step's
  compilation included), without the pauses for evaluation, checkpoints and sample grids:
  what the training itself cost, the x axis of a time-to-quality curve. wall_time_s:
  seconds since train_and_evaluate was called (data loading, compilation, every pause).

  A resumed run continues both counts from the newest record at or before the restored step
  in metrics.jsonl (`history`): the time of the steps a stop lost and redone is not counted
  twice, nor the downtime, while the restart's own data loading and compilation are. When
  train.checkpoint_every is not a multiple of train.log_every, the steps between that
  record and the checkpoint (fewer than log_every) are left out of the count.
  """

  def __init__(self, t0: float, history: list[dict], now: Callable[[], float] = time.perf_counter):
    self.now = now  # t0's clock.
    earlier = [r for r in history if 'train_time_s' in r]
    self.train_offset_s = float(earlier[-1]['train_time_s']) if earlier else 0.0
    self.wall_offset_s = float(earlier[-1].get('wall_time_s', 0.0)) if earlier else 0.0
    self.t0 = t0
    self.train_start: Optional[float] = None
    self.paused_s = 0.0
    self.pause_start: Optional[float] = None

  def start_training(self) -> None:
    self.train_start = self.now()

  def stop_training(self) -> None:
    """From now on train_time_s stands still (a pause without end)."""
    self.pause_start = self.now()

  @contextlib.contextmanager
  def pause(self) -> Iterator[None]:
    """The time inside is not training time (evaluation, checkpoint, samples)."""
    start = self.pause_start = self.now()
    try:
      yield
    finally:
      self.paused_s += self.now() - start
      self.pause_start = None

  def train_time_s(self) -> float:
    if self.train_start is None:
      return self.train_offset_s
    now = self.pause_start if self.pause_start is not None else self.now()
    return self.train_offset_s + now - self.train_start - self.paused_s

  def wall_time_s(self) -> float:
    return self.wall_offset_s + self.now() - self.t0

  def fields(self) -> dict[str, float]:
    """{'train_time_s', 'wall_time_s'} now, for a metrics record."""
    return {'train_time_s': self.train_time_s(), 'wall_time_s': self.wall_time_s()}


class _Progress:
  """Consumes per-step metrics one step late: NaN check, running averages, log lines."""

  def __init__(self, config, writer, bar, start_step, clock: TrainClock):
    self.config, self.writer, self.bar, self.clock = config, writer, bar, clock
    self.window: list[float] = []
    self.window_start = clock.train_time_s()  # Pauses excluded.
    self.window_first_step = start_step
    self.last: dict = {}
    self.initial_loss: Optional[float] = None
    self.images_per_s = 0.0
    self.last_good_step = start_step

  def consume(self, step: int, metrics: Any, checkpoint_dir: str) -> None:
    m = jax.device_get(metrics)
    if not bool(m['finite']):
      raise TrainingDivergedError(
        f'Training diverged at step {step}: loss={float(m["nll_nats"])}, '
        f'grad_norm={float(m["grad_norm"])} (NaN/inf). Checkpoints in {checkpoint_dir} '
        f'are kept (none is later than step {self.last_good_step}); lower '
        'config.optim.learning_rate or enable config.optim.grad_clip_norm.'
      )
    self.last_good_step = step
    loss = evaluation.report_loss(m['nll_nats'], self.config)
    if self.initial_loss is None:
      self.initial_loss = loss
    self.window.append(loss)
    self.last = {'train_loss': loss, 'grad_norm': float(m['grad_norm'])}
    self.bar.update(step - self.bar.n)
    t = self.config.train
    if itstime(step, t.log_every, t.num_steps):
      elapsed = self.clock.train_time_s() - self.window_start
      n = step - self.window_first_step
      self.images_per_s = n * t.batch_size / max(elapsed, 1e-9)
      self.bar.set_postfix(
        loss=f'{np.mean(self.window):.4g}', img_s=f'{self.images_per_s:.1f}', refresh=False
      )
      logging.info(
        'Step %d: train loss %.4f %s (mean of %d steps), grad norm %.3g, %.1f images/s.',
        step,
        np.mean(self.window),
        evaluation.loss_unit(self.config),
        len(self.window),
        self.last['grad_norm'],
        self.images_per_s,
      )
      self.writer.write(
        step,
        {
          'train_loss': float(np.mean(self.window)),
          'train_loss_last': loss,
          'grad_norm': self.last['grad_norm'],
          'images_per_s': self.images_per_s,
          'loss_unit': evaluation.loss_unit(self.config),
          **self.clock.fields(),
        },
      )
      self.window, self.window_first_step = [], step
      self.window_start = self.clock.train_time_s()


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str
) -> tuple[train_state.TrainState, dict]:
  """Trains config.train.num_steps steps (resuming from workdir), evaluates, samples.

  Returns the final state and a summary dict: steps, time_s, train_loss (last step),
  initial_train_loss, eval_loss, test_loss (in `unit`: nats or bits/dim), images_per_s,
  train_time_s (TrainClock's: the training loop without its pauses, continued across
  resumes; time_s is this call's, start to end),
  and for the multi-scale model each stage's last validation NLL, eval_nll_nats_<part>.
  The config is checked first (configs.validate): a bad field raises ConfigError before
  anything is read or written. The workdir is then locked for the run (process 0): a second
  run on it raises WorkdirLockedError.

  A run stopped at any moment (killed, preempted, out of disk) and started again with the
  same config resumes from its newest good checkpoint, first finishes the work of that step
  that the stop skipped (evaluation record, best checkpoint, sample grid, final record), and
  ends with the same weights, metrics, best checkpoint and samples as an uninterrupted run.
  """
  t0 = time.perf_counter()
  configs.validate(config, num_devices=jax.device_count())
  is_chief = jax.process_index() == 0
  if is_chief:
    workdir = workdir_lib.check_usable(workdir)
  with workdir_lib.lock(workdir, enabled=is_chief):
    # Absolute, or a URI (gs://...).
    return _train_and_evaluate(config, os.fspath(storage.path(workdir)), t0)


def _train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, t0: float
) -> tuple[train_state.TrainState, dict]:
  """train_and_evaluate with a validated config in a locked workdir."""
  mesh = sharding.make_mesh(config.mesh.num_devices)
  t = config.train
  is_chief = jax.process_index() == 0
  logging.info(
    'Mesh %s over %d devices (%d processes).',
    dict(mesh.shape),
    mesh.devices.size,
    jax.process_count(),
  )

  checkpointing.check_config(workdir, config)
  # Data before the checkpoint directories and compilation: a data error costs nothing.
  data = runs.open_data(config)
  train_images = runs.load_split(data, config.data.train_split)
  train_labels = runs.load_labels(data, config.data.train_split)
  data_text = data.describe(config.data.train_split)
  if config.data.num_levels == 2:
    data_text += f', binarization {data.info.binarization}'
  if data.info.caveat:
    data_text += f' (NOT comparable with the paper: {data.info.caveat})'
    logging.warning('Data: %s.', data.info.caveat)
  logging.info(
    'Data: %s; %d training images%s.',
    data_text,
    len(train_images),
    ' (streamed from disk)' if config.data.streaming else '',
  )
  ckpt = checkpointing.Checkpointer(workdir, keep=t.keep_checkpoints)
  model = models.get_model(config)
  tx = optim.make_optimizer(config)
  target = train_state.abstract_state(config, model, tx, mesh)
  state, start_step = restore_or_init(config, workdir, ckpt, model, tx, mesh, target)
  checkpointing.save_config(workdir, config)
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  logging.info('%s: %d parameters.', config.model.name, num_params)
  # Read by every process before anything is written: all agree on what is left to do.
  history = metrics_writer.history(workdir, start_step)
  todo = unfinished_work(config, workdir, start_step, history, ckpt.best_step())
  if todo:
    logging.info(
      'Completing the work of step %d that the previous run did not finish: %s.',
      start_step,
      ', '.join(todo),
    )

  eval_cache: dict[str, tuple] = {}

  def split_data(split):
    """(images, labels or None) of an evaluation split, read once."""
    if split not in eval_cache:
      eval_cache[split] = (runs.load_split(data, split), runs.load_labels(data, split))
    return eval_cache[split]

  jit_train_step = make_train_step(model, tx, mesh)
  jit_eval_step = evaluation.make_eval_step(model, mesh)

  writer = metrics_writer.MetricsWriter(workdir, enabled=is_chief, resume_step=start_step)
  bar = tqdm.tqdm(
    total=t.num_steps,
    initial=start_step,
    disable=not is_chief,
    desc=f'{config.model.name} {config.data.name}',
    unit='step',
    dynamic_ncols=True,
    mininterval=0.5 if sys.stderr.isatty() else 30.0,
  )
  clock = TrainClock(t0, history)
  progress = _Progress(config, writer, bar, start_step, clock)
  summary: dict = {'start_step': start_step}
  evals = [r for r in history if 'eval_loss' in r]
  if evals:
    summary['eval_loss'] = evals[-1]['eval_loss']

  def evaluate(split):
    images, labels = split_data(split)
    return evaluation.evaluate_images(
      config, model, state.params, images, mesh, jit_eval_step, labels=labels
    )

  def evaluate_and_offer_best(step):
    eval_start = time.perf_counter()
    result = evaluate(config.data.eval_split)
    logging.info(
      'Step %d: eval (%s) NLL %.4f %s over %d images, %.1f images/s.',
      step,
      config.data.eval_split,
      result['loss'],
      evaluation.loss_unit(config),
      result['num_examples'],
      result['num_examples'] / max(time.perf_counter() - eval_start, 1e-9),
    )
    fault_injection.point('eval_done', step)
    summary['eval_loss'] = result['loss']
    summary.update(evaluation.stage_nlls(result, 'eval_'))
    writer.write(
      step,
      {
        'eval_loss': result['loss'],
        'eval_nll_nats': result['nll_nats'],
        **evaluation.stage_nlls(result, 'eval_'),
        'loss_unit': evaluation.loss_unit(config),
        **clock.fields(),
      },
    )
    fault_injection.point('eval_recorded', step)
    offer_best(step, result['loss'])

  def offer_best(step, eval_loss):
    ckpt.save_best(step, state, eval_loss)
    fault_injection.point('best_started', step)
    fault_injection.point('best_written', step, before=ckpt.wait)

  def sample(step):
    write_samples(config, model, state.params, step, workdir, writer)
    fault_injection.point('sample_written', step)

  def periodic_work(step, due):
    if due['checkpoint']:
      ckpt.save(step, state)
      fault_injection.point('checkpoint_started', step)
      fault_injection.point('checkpoint_written', step, before=ckpt.wait)
    if due['eval']:
      evaluate_and_offer_best(step)
    if due['sample']:
      sample(step)

  rows = sharding.local_slice(t.batch_size, mesh)  # This process reads only its share.
  if jax.process_count() > 1:
    logging.info(
      'Process %d reads rows %d:%d of every batch of %d.',
      jax.process_index(),
      rows.start,
      rows.stop,
      t.batch_size,
    )
  batches: Iterator = input_pipeline.train_batches(
    config,
    train_images,
    seed=config.seed,
    start_step=start_step,
    batch_size=t.batch_size,
    rows=rows,
    labels=train_labels,
  )
  pending = None
  step_profiler = profiler.StepProfiler(t.profile_steps, workdir, start_step)
  clock.start_training()
  interrupted = False
  try:
    with clock.pause():
      if 'eval' in todo:
        evaluate_and_offer_best(start_step)
      elif 'best' in todo:
        offer_best(start_step, evals[-1]['eval_loss'])
      if 'sample' in todo:
        sample(start_step)
    with interrupts.deferred():
      for step in range(start_step + 1, t.num_steps + 1):
        interrupts.check()
        step_profiler.step_starting(step)
        batch, labels = next(batches) if train_labels is not None else (next(batches), None)
        state, metrics = jit_train_step(
          state,
          sharding.to_global(batch, mesh, t.batch_size),
          None if labels is None else sharding.to_global(labels, mesh, t.batch_size),
        )
        step_profiler.step_dispatched(step, (state, metrics))
        if pending is not None:
          progress.consume(*pending, ckpt.latest_dir)
        pending = (step, metrics)
        fault_injection.point('step', step)
        due = due_work(step, t)
        if not any(due.values()):
          continue
        # Periodic work reads the new state: first make sure it is finite.
        progress.consume(*pending, ckpt.latest_dir)
        pending = None
        with clock.pause():
          periodic_work(step, due)
      interrupts.check()  # A signal during the last step's work.
    if pending is not None:
      progress.consume(*pending, ckpt.latest_dir)
    clock.stop_training()  # The final test evaluation is not training time.
    train_time = clock.train_time_s()

    finished = start_step == t.num_steps and 'final' not in todo
    if finished:  # A rerun of a finished run: its results are in the history.
      final = [r for r in history if 'final_eval_loss' in r][-1]
      summary['eval_loss'], summary['test_loss'] = final['final_eval_loss'], final['test_loss']
    else:
      try:
        if config.data.test_split == config.data.eval_split:
          # The last step is always evaluated: that split's NLL of these weights is known.
          summary['test_loss'] = summary['eval_loss']
        else:
          summary['test_loss'] = evaluate(config.data.test_split)['loss']
      except configs.ConfigError as e:
        # E.g. the offline MNIST fallback has no test split unless config.data.idx_dir is set.
        summary['test_loss'] = None
        summary['test_error'] = str(e)
        logging.warning(
          'No test evaluation: %s Later: python -m pixel_jax.evaluate --workdir=%s --idx_dir=...',
          e,
          workdir,
        )
      fault_injection.point('test_done', t.num_steps)
      writer.write(
        t.num_steps,
        {
          'final_eval_loss': summary['eval_loss'],
          'test_loss': summary['test_loss'],
          'loss_unit': evaluation.loss_unit(config),
          **clock.fields(),
        },
      )
      fault_injection.point('final_recorded', t.num_steps)
  except KeyboardInterrupt:
    interrupted = True
  finally:
    step_profiler.stop()
    ckpt.wait()  # In-flight saves are of verified-finite states only.
    bar.close()
    writer.close()
  if interrupted:
    ckpt.close()
    raise TrainingInterrupted(
      f'interrupted at step {progress.last_good_step}; checkpoint at step '
      f'{ckpt.latest_step()}; rerun the same command to resume.'
    )
  last_train = [r for r in history if 'train_loss_last' in r]
  summary.update(
    {
      'steps': t.num_steps,
      'unit': evaluation.loss_unit(config),
      'train_loss': progress.last.get(
        'train_loss', last_train[-1]['train_loss_last'] if last_train else float('nan')
      ),
      'initial_train_loss': progress.initial_loss,
      'images_per_s': progress.images_per_s,
      'train_time_s': train_time,
      'time_s': time.perf_counter() - t0,
      'num_params': int(num_params),
      'workdir': workdir,
      'best_step': ckpt.best_step(),
      'data': data_text,
    }
  )
  ckpt.close()
  test_text = (
    'n/a (no test split; see the warning)'
    if summary['test_loss'] is None
    else f'{summary["test_loss"]:.4f}'
  )
  line = (
    f'Done: {t.num_steps} steps (from {start_step}) in {summary["time_s"]:.1f}s | '
    f'train loss {summary["train_loss"]:.4f} | '
    f'eval ({config.data.eval_split}) {summary["eval_loss"]:.4f} | '
    f'test ({config.data.test_split}) {test_text} {summary["unit"]} | '
    f'data {data_text}'
  )
  summary['summary_line'] = line
  logging.info(line)
  if is_chief:
    print(line, flush=True)
  return state, summary
