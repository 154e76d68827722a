"""The base experiment configuration that every file in experiments/ derives from.

A config is a nested ml_collections.ConfigDict with the sections data, model, optim,
train, eval, sample and mesh. Experiment files call `base_config()` or one of the
dataset-family builders below (`tiny_config`, `mnist_config`, `cifar10_config`,
`imagenet_config`) and override a few fields (depth, width, batch, steps); command-line flags
override any field (--config.train.num_steps=100).

`validate(config)` is the contract every field must meet; the entry points (training,
`python -m pixel_jax.evaluate`, `python -m pixel_jax.sample`) run it once, before any data
is loaded or anything is compiled, and it raises one ConfigError that names the field.
"""

import math
from typing import Any, Optional

import jax
import ml_collections

from pixel_jax import input_pipeline
from pixel_jax import models
from pixel_jax import optim
from pixel_jax import sampling
from pixel_jax import sharding
from pixel_jax.models import multiscale


class ConfigError(ValueError):
  """A config field that cannot work; the message names the field and what to set."""


def base_config() -> ml_collections.ConfigDict:
  """Returns the defaults shared by all experiments (binarized MNIST, Row LSTM)."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  # TFDS name: a catalog dataset (binarized_mnist, mnist, cifar10, imagenet_resized/32x32,
  # ...) or an offline builder (mnist_bundled, photos_bundled, mnist_idx,
  # imagenet_manual/32x32 or /64x64).
  config.data.name = 'mnist_bundled'
  config.data.image_size = 28
  config.data.num_channels = 1
  config.data.num_levels = 2  # 2: binary (Bernoulli); 256: 8-bit (256-way softmax).
  # How grey MNIST becomes binary: 'static' (stochastic, sampled once with a fixed seed),
  # 'dynamic' (resampled every batch), 'threshold' (> 127) or 'none' (data already binary
  # or num_levels == 256).
  config.data.binarization = 'static'
  config.data.binarization_seed = 0
  # When a catalog MNIST cannot be prepared offline, use the bundled real digits instead
  # (with a loud warning). False turns that into an error.
  config.data.allow_fallback = True
  # True: never download. A catalog dataset that is not prepared in data_dir is then
  # unavailable at once (no network probe). False: download it when the TFDS host answers,
  # directly or through the proxy named by HTTPS_PROXY / ALL_PROXY (NO_PROXY respected).
  config.data.offline = False
  config.data.data_dir = ''  # TFDS data_dir; '' means TFDS's default (~/tensorflow_datasets).
  config.data.idx_dir = ''  # Directory with MNIST IDX files, for data.name = 'mnist_idx'.
  # The TFDS manual_dir: the folder with the downsampled ImageNet files, for
  # data.name = 'imagenet_manual/...' (datasets/imagenet_manual.py lists the file names).
  config.data.manual_dir = ''
  # False: whole splits are read into memory. True: batches are read from disk by random
  # access, each process reading only its rows (for splits too large for memory).
  config.data.streaming = False
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.test_split = 'test'

  config.model = ml_collections.ConfigDict()
  config.model.name = 'row_lstm'  # models.MODEL_NAMES (models/cores.py) or 'multiscale'
  config.model.num_layers = 7
  config.model.hidden_channels = 16  # h: LSTM state size; residual stream has 2h channels.
  config.model.out_hidden_channels = 32  # Width of the hidden 1x1 output layers (1024 colour).
  # Hidden 1x1 layers of the output head before the logits layer (_paper_network says why 1).
  config.model.out_hidden_layers = 1
  config.model.first_kernel_size = 7  # The mask-A input convolution.
  config.model.residual = True
  config.model.skip = False  # Learnable 1x1 skip connection from every layer to the output.
  config.model.scan_layers = True  # nn.scan over identical layers: compile time flat in depth.
  # Every layer in ONE scan (models/wavefront.py), same parameters and outputs. Row LSTM:
  # H + L - 1 row steps, layer l on row s - l at step s, instead of L x H. Diagonal BiLSTM:
  # (2n - 1) + (L - 1) n skewed-column steps, each layer n columns behind the one below,
  # instead of L (2n - 1).
  config.model.wavefront = False
  config.model.dtype = 'float32'  # Compute dtype: 'float32' or 'bfloat16' (params stay fp32).
  # K > 0: class-conditional on the dataset's labels in [0, K) (10 for MNIST and CIFAR-10);
  # every layer adds a learned per-class bias to its gate pre-activations. 0: unconditional.
  config.model.num_classes = 0
  # Multi-Scale PixelRNN, used when model.name = 'multiscale' (models/multiscale.py says why):
  # an unconditional PixelRNN on a small s x s image and a conditional one (the fields above)
  # on the full image.
  config.model.multiscale = ml_collections.ConfigDict()
  config.model.multiscale.core = 'row_lstm'  # Both networks: 'row_lstm' | 'diagonal_bilstm'.
  config.model.multiscale.small_size = 14  # s; must divide data.image_size.
  config.model.multiscale.subsample = 'stride'  # Every (n/s)-th pixel: keeps exact levels.
  config.model.multiscale.cond_channels = 16  # c: channels of the conditioning map.
  config.model.multiscale.upsampler_layers = 1  # Transposed convolutions, strides -> n/s.
  config.model.multiscale.small_num_layers = 7  # The small-image network's depth,
  config.model.multiscale.small_hidden_channels = 16  # width h
  config.model.multiscale.small_residual = True  # and residual connections.

  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'rmsprop'  # 'rmsprop' (the paper) or 'adam'.
  config.optim.learning_rate = 1e-3
  config.optim.schedule = 'constant'  # 'constant' | 'cosine'
  config.optim.warmup_steps = 0
  config.optim.grad_clip_norm = 1.0  # 0 disables clipping.
  config.optim.weight_decay = 0.0

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 16  # Global batch, split over the 'data' mesh axis.
  config.train.num_steps = 2000
  config.train.log_every = 50
  config.train.eval_every = 500
  config.train.checkpoint_every = 500
  config.train.sample_every = 1000  # 0 disables periodic sample grids.
  config.train.keep_checkpoints = 3
  # jax.profiler trace of these steps (first to last) into WORKDIR/profile; () for none.
  config.train.profile_steps = ()

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 100
  config.eval.max_examples = 0  # 0: the whole split.

  config.sample = ml_collections.ConfigDict()
  config.sample.num_samples = 16
  config.sample.method = 'cached'  # 'cached' | 'naive'
  config.sample.temperature = 1.0

  config.mesh = ml_collections.ConfigDict()
  config.mesh.num_devices = -1  # -1: every device on the ('data',) mesh.
  return config


def tiny_config(model_name: str) -> ml_collections.ConfigDict:
  """Returns a tiny 8x8 bundled-MNIST setup for tests and smoke runs (well under a minute)."""
  config = base_config()
  config.data.name = 'mnist_bundled'
  config.data.image_size = 8  # 28x28 digits box-downsampled to 8x8.
  config.model.name = model_name
  config.model.num_layers = 2
  config.model.hidden_channels = 8
  config.model.out_hidden_channels = 16
  config.model.first_kernel_size = 3
  # XLA:CPU runs convolutions inside a while loop (nn.scan over layers) several times slower.
  config.model.scan_layers = False
  config.optim.name = 'adam'
  config.optim.learning_rate = 3e-3
  config.train.batch_size = 8
  config.train.num_steps = 30
  config.train.log_every = 5
  config.train.eval_every = 15
  config.train.checkpoint_every = 10
  config.train.sample_every = 30
  config.train.keep_checkpoints = 2
  config.eval.batch_size = 64
  config.eval.max_examples = 128
  config.sample.num_samples = 4
  return config


def _paper_network(
  config: ml_collections.ConfigDict, model_name: str, out_hidden_channels: int
) -> None:
  """Sets the network layout the paper uses in all its models (docs/design.md section 5).

  * Residual connections around every layer (base_config's `model.residual = True`); the
    one paper setting without them, the ImageNet 64x64 Row LSTM, turns them off in its
    experiment file.
  * Skip connections: the paper connects every layer to the output as well as residually
    and reports both together as best (its Table 2, 12-layer Row LSTM on CIFAR-10:
    residual only 3.07, skip only 3.09, both 3.06 bits/dim). The paper does not say how;
    here each layer's output goes through a learnable 1x1 mask-B convolution and the sum
    of these feeds the output head.
  * Output head: ReLU -> 1x1 mask B -> ReLU -> 1x1 mask B, with `out_hidden_channels`
    features in the hidden 1x1 layer: 1024 for colour data, 32 for MNIST. The paper lists
    the output layers as "ReLU followed by 1x1 conv, mask B (2 layers)" before the softmax
    (or sigmoid). We read the second of the two 1x1 layers as the one that emits the
    logits, so the head has one hidden layer of that width (`model.out_hidden_layers = 1`).
    The text also allows two hidden layers of that width followed by a logits layer:
    --config.model.out_hidden_layers=2 builds that reading.
  """
  config.model.name = model_name
  config.model.residual = True
  config.model.skip = True
  config.model.out_hidden_channels = out_hidden_channels
  config.model.out_hidden_layers = 1


def mnist_config(model_name: str) -> ml_collections.ConfigDict:
  """Returns binarized MNIST with the paper's network layout, as a 500-step CPU demo.

  From the paper: the 28x28x1 binary data, batch 16, RMSProp, residual and skip
  connections, the output head with 32 hidden features (`_paper_network`). The paper gives
  no learning rate or gradient clipping: RMSProp at lr 1e-3 with the gradient norm clipped
  at 1.0 (base_config) are our choices.
  """
  config = base_config()
  # data.name: the TFDS catalog binarized_mnist (the standard fixed stochastic binarization).
  # Offline, allow_fallback=True uses the bundled real digits (4,500 train / 500 validation)
  # with a static Bernoulli(x/255) binarization and says so loudly; their 'test' split is the
  # real MNIST test set read from data.idx_dir (--config.data.idx_dir=/path/to/mnist).
  config.data.name = 'binarized_mnist'
  _paper_network(config, model_name, out_hidden_channels=32)
  # On CPU, 4 unrolled PixelRNN layers train 10-16% faster than under nn.scan
  # (docs/results.md); at MNIST depth (<= 7 recurrent layers) unrolled compiles in < 10 s.
  config.model.scan_layers = False
  # The default is a CPU demo (a few minutes, loss visibly falling, far from converged);
  # the paper-level numbers need ~100k+ steps: --config.train.num_steps=200000.
  config.train.num_steps = 500
  config.train.log_every = 25
  config.train.eval_every = 250
  config.train.checkpoint_every = 100
  config.train.sample_every = 500
  return config


def _colour_config(model_name: str, data_name: str, image_size: int) -> ml_collections.ConfigDict:
  """Returns the shared 8-bit colour setup of the CIFAR-10 and ImageNet experiments."""
  config = base_config()
  # 8-bit colour: a 256-way softmax per sub-pixel, reported in bits/dim. A TFDS catalog
  # dataset that must be prepared as array_record (the input pipeline says how), or files in
  # data.manual_dir (ImageNet); no fallback.
  config.data.name = data_name
  config.data.image_size = image_size
  config.data.num_channels = 3
  config.data.num_levels = 256
  config.data.binarization = 'none'
  config.data.allow_fallback = False
  _paper_network(config, model_name, out_hidden_channels=1024)
  config.model.scan_layers = True  # Accelerator configs: compile time flat in depth.
  # The paper's RMSProp (base_config); the warmed-up cosine decay over a long run, like the
  # learning rate and the clipping, is our choice (the paper gives no schedule).
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 1000
  config.train.num_steps = 400_000
  config.train.log_every = 100
  config.train.eval_every = 10_000
  config.train.checkpoint_every = 2_000
  config.train.sample_every = 20_000
  config.eval.batch_size = 64
  return config


def cifar10_config(model_name: str) -> ml_collections.ConfigDict:
  """Returns CIFAR-10 32x32 at 256 levels, batch 16, for an accelerator."""
  config = _colour_config(model_name, 'cifar10', 32)
  # CIFAR-10 has no validation split: hold out the last 2% of train for model selection.
  config.data.train_split = 'train[:98%]'
  config.data.eval_split = 'train[98%:]'
  return config


def imagenet_config(model_name: str, image_size: int) -> ml_collections.ConfigDict:
  """Returns downsampled ImageNet (image_size 32 or 64) at 256 levels, for accelerators.

  Reads the files in config.data.manual_dir (--config.data.manual_dir=DIR): the paper
  authors' release (train_32x32.tar, valid_32x32.tar) or the npz batches of Chrabaszcz et al.
  (a different resize: numbers NOT comparable with the paper's; the run's log says so).
  TFDS's imagenet_resized/32x32 also works by name (--config.data.name), with the same caveat.
  """
  config = _colour_config(model_name, f'imagenet_manual/{image_size}x{image_size}', image_size)
  config.data.streaming = True  # ImageNet 64x64 train is 15 GB decoded: never in memory.
  config.data.eval_split = 'validation'
  config.data.test_split = 'validation'  # The paper reports on the validation set.
  return config


# ----------------------------------------------------------------------------- validation


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
  value = config
  for key in field.split('.'):
    value = value[key]
  return value


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_at_least(config: ml_collections.ConfigDict, field: str, least: int, why: str = '') -> None:
  value = _get(config, field)
  if not _is_int(value) or value < least:
    raise ConfigError(f'config.{field}={value!r} must be an integer >= {least}{why}.')


def _number_at_least(
  config: ml_collections.ConfigDict, field: str, least: float, why: str = ''
) -> None:
  value = _get(config, field)
  if not _is_number(value) or value < least:
    raise ConfigError(f'config.{field}={value!r} must be a number >= {least:g}{why}.')


def _one_of(config: ml_collections.ConfigDict, field: str, allowed: tuple[Any, ...]) -> None:
  value = _get(config, field)
  if value not in allowed:
    raise ConfigError(
      f'config.{field}={value!r} is not supported; use one of {", ".join(map(repr, allowed))}.'
    )


def _flag(config: ml_collections.ConfigDict, field: str) -> None:
  value = _get(config, field)
  if not isinstance(value, bool):
    raise ConfigError(f'config.{field}={value!r} must be True or False.')


def _validate_data(config: ml_collections.ConfigDict) -> None:
  d = config.data
  for field in ('name', 'train_split', 'eval_split', 'test_split'):
    if not isinstance(d[field], str) or not d[field]:
      raise ConfigError(f'config.data.{field}={d[field]!r} must be a non-empty string.')
  for field in ('data_dir', 'idx_dir', 'manual_dir'):
    if not isinstance(d[field], str):
      raise ConfigError(f"config.data.{field}={d[field]!r} must be a path, or '' for none.")
  if d.name == 'mnist_idx' and not d.idx_dir:
    raise ConfigError(
      "config.data.name='mnist_idx' needs config.data.idx_dir: set it to a "
      'folder with the MNIST IDX files (t10k-images-idx3-ubyte[.gz], ...).'
    )
  _int_at_least(config, 'data.image_size', 1)
  _int_at_least(config, 'data.num_channels', 1)
  _one_of(config, 'data.num_levels', (2, 256))
  _one_of(config, 'data.binarization', input_pipeline.BINARIZATIONS)
  _int_at_least(config, 'data.binarization_seed', 0)
  _flag(config, 'data.allow_fallback')
  _flag(config, 'data.offline')
  _flag(config, 'data.streaming')


def _validate_model(config: ml_collections.ConfigDict) -> None:
  m, d = config.model, config.data
  _one_of(config, 'model.name', models.MODEL_NAMES + ('multiscale',))
  for field in ('num_layers', 'hidden_channels', 'out_hidden_channels', 'out_hidden_layers'):
    _int_at_least(config, f'model.{field}', 1)
  k = m.first_kernel_size
  if not _is_int(k) or k < 1 or k % 2 == 0:
    raise ConfigError(
      f'config.model.first_kernel_size={m.first_kernel_size!r} must be an odd '
      'integer >= 1 (e.g. 7).'
    )
  for field in ('residual', 'skip', 'scan_layers', 'wavefront'):
    _flag(config, f'model.{field}')
  core = m.multiscale.core if m.name == 'multiscale' else m.name
  if m.wavefront and core not in models.WAVEFRONT_CORES:
    raise ConfigError(
      f'config.model.wavefront=True needs a core in {models.WAVEFRONT_CORES} (this one is '
      f'{core!r}); set config.model.wavefront=False.'
    )
  _int_at_least(config, 'model.num_classes', 0)
  _one_of(config, 'model.dtype', tuple(models.DTYPES))
  for field in ('hidden_channels', 'out_hidden_channels'):
    _int_at_least(
      config,
      f'model.{field}',
      d.num_channels,
      ' (config.data.num_channels: every colour channel owns a feature)',
    )
  if m.name == 'multiscale':
    _validate_multiscale(config)


def _validate_multiscale(config: ml_collections.ConfigDict) -> None:
  """The two networks of model.name='multiscale' (models/multiscale.py)."""
  d = config.data
  _one_of(config, 'model.multiscale.core', multiscale.RECURRENT_CORES)
  _one_of(config, 'model.multiscale.subsample', multiscale.SUBSAMPLE_METHODS)
  for field in ('small_size', 'cond_channels', 'upsampler_layers', 'small_num_layers'):
    _int_at_least(config, f'model.multiscale.{field}', 1)
  _int_at_least(
    config,
    'model.multiscale.small_hidden_channels',
    d.num_channels,
    ' (config.data.num_channels: every colour channel owns a feature)',
  )
  _flag(config, 'model.multiscale.small_residual')
  s, n = config.model.multiscale.small_size, d.image_size
  if s >= n or n % s:
    raise ConfigError(
      f'config.model.multiscale.small_size={s} must divide '
      f'config.data.image_size={n} and be smaller than it (e.g. {n // 2}).'
    )


def _validate_optim(config: ml_collections.ConfigDict) -> None:
  o = config.optim
  _one_of(config, 'optim.name', optim.OPTIMIZERS)
  _one_of(config, 'optim.schedule', optim.SCHEDULES)
  if not _is_number(o.learning_rate) or o.learning_rate <= 0:
    raise ConfigError(f'config.optim.learning_rate={o.learning_rate!r} must be a number > 0.')
  _int_at_least(config, 'optim.warmup_steps', 0)
  _number_at_least(config, 'optim.grad_clip_norm', 0, ' (0 disables clipping)')
  _number_at_least(config, 'optim.weight_decay', 0)


def _validate_train(config: ml_collections.ConfigDict) -> None:
  if not _is_int(config.seed):
    raise ConfigError(f'config.seed={config.seed!r} must be an integer.')
  for field in ('batch_size', 'num_steps', 'keep_checkpoints'):
    _int_at_least(config, f'train.{field}', 1)
  for field in ('log_every', 'eval_every', 'checkpoint_every', 'sample_every'):
    _int_at_least(config, f'train.{field}', 0, ' (0 turns it off)')
  _int_at_least(config, 'eval.batch_size', 1)
  _int_at_least(config, 'eval.max_examples', 0, ' (0: the whole split)')
  steps = config.train.profile_steps
  if not isinstance(steps, (tuple, list)) or not all(_is_int(s) and s >= 1 for s in steps):
    raise ConfigError(
      f'config.train.profile_steps={steps!r} must be a tuple of step numbers '
      ">= 1, e.g. '(10, 12)' for steps 10 to 12, or () for none."
    )


def _validate_sample(config: ml_collections.ConfigDict) -> None:
  _int_at_least(config, 'sample.num_samples', 1)
  _one_of(config, 'sample.method', sampling.METHODS)
  _number_at_least(config, 'sample.temperature', 0, ' (0 is greedy)')


def _validate_mesh(config: ml_collections.ConfigDict, num_devices: Optional[int]) -> None:
  n = config.mesh.num_devices
  if not _is_int(n) or not (n == -1 or n >= 1):
    raise ConfigError(
      f'config.mesh.num_devices={n!r} must be -1 (every device) or an integer >= 1.'
    )
  if num_devices is None:
    return
  if n > num_devices:
    raise ConfigError(
      f'config.mesh.num_devices={n} must be -1 or between 1 and the '
      f'{num_devices} available devices.'
    )
  if n not in (-1, num_devices) and jax.process_count() > 1:
    raise ConfigError(f'config.mesh.num_devices={n} must be -1 on a multi-host run.')
  try:
    sharding.check_batch_size(config.train.batch_size, num_devices if n == -1 else n)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def validate(config: ml_collections.ConfigDict, num_devices: Optional[int] = None) -> None:
  """Raises one ConfigError naming the first field of `config` that cannot work.

  Every field of base_config() is checked: its type, its range and how it must agree with
  the others (e.g. model.multiscale.small_size divides data.image_size). Nothing is loaded,
  built or compiled.

  Args:
    config: a config derived from base_config().
    num_devices: for training, the devices of the run (jax.device_count()):
      config.mesh.num_devices must fit in them and config.train.batch_size must split
      evenly over the mesh. Restoring a run (evaluation, sampling) leaves it None: its
      training batch does not matter there.
  """
  missing = sorted(set(_keys(base_config().to_dict())) - set(_keys(config.to_dict())))
  if missing:
    default = _get(base_config(), missing[0])
    raise ConfigError(
      f'config.{missing[0]} is missing: derive the config from '
      'pixel_jax.configs.base_config() (a config.json written before the '
      f'field existed needs it added; the default is {default!r}).'
    )
  _validate_data(config)
  _validate_model(config)
  _validate_optim(config)
  _validate_train(config)
  _validate_sample(config)
  _validate_mesh(config, num_devices)


def _keys(d: dict, prefix: str = '') -> list[str]:
  """The dotted names of the leaves of a nested dict."""
  out: list[str] = []
  for k, v in d.items():
    out += _keys(v, f'{prefix}{k}.') if isinstance(v, dict) else [prefix + k]
  return out
