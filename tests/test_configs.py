"""Experiment configs and the config contract: they load, keep base_config's fields, pass
configs.validate and build; every bad value is one ConfigError line naming its field."""

import functools
import glob
import os
import re

from absl import flags
import jax
from ml_collections import config_flags
import pytest

from experiments import tiny
from experiments import tiny_multiscale
from pixel_jax import configs
from pixel_jax import models
from pixel_jax import optim
from pixel_jax import sample as sample_cli
from pixel_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXPERIMENTS = sorted(glob.glob(os.path.join(REPO, 'experiments', '[!_]*.py')))
PAPER = {  # The paper's test numbers (docs/design.md section 6).
  'mnist_diagbilstm': '79.20 nats',
  'mnist_diagbilstm_1x32': '80.75 nats',
  'mnist_rowlstm': '80.54 nats',
  'mnist_pixelcnn': '81.30 nats',
  'cifar10_rowlstm': '3.07 bits/dim',
  'cifar10_diagbilstm': '3.00 bits/dim',
  'cifar10_pixelcnn': '3.14 bits/dim',
  'imagenet32_rowlstm': '3.86 bits/dim',
  'imagenet64_rowlstm': '3.63 bits/dim',
}
GATED_PAPER = {  # The Gated PixelCNN paper's (van den Oord et al., 2016) test numbers.
  'cifar10_gated_pixelcnn': '3.03 bits/dim',
}
# Parameters of each shipped config's network, counted from shapes alone (jax.eval_shape).
# A count changes only when a network's layout changes on purpose: then update it here.
PARAMETERS = {
  'cifar10_diagbilstm': 8_583_936,
  'cifar10_gated_pixelcnn': 7_241_472,
  'cifar10_pixelcnn': 5_277_696,
  'cifar10_rowlstm': 9_361_152,
  'imagenet32_rowlstm': 76_052_224,
  'imagenet64_multiscale': 122_870_464,
  'imagenet64_rowlstm': 46_049_024,
  'mnist_diagbilstm': 72_577,
  'mnist_diagbilstm_1x32': 44_737,
  'mnist_gated_pixelcnn': 67_793,
  'mnist_multiscale': 138_770,
  'mnist_pixelcnn': 69_409,
  'mnist_pixelcnn_classes': 79_969,
  'mnist_rowlstm': 79_073,
  'tiny': 5_441,
  'tiny_multiscale': 12_314,
}


def _load(path: str, argv: tuple[str, ...] = ()):
  """Loads a config file the way main.py does, with command-line overrides."""
  values = flags.FlagValues()
  full_argv = ['prog', f'--config={path}', *argv]
  config_flags.DEFINE_config_file(
    'config', None, 'config', flag_values=values, lock_config=True, sys_argv=full_argv
  )
  values(full_argv)
  return values.config


def _keys(d, prefix=''):
  out = set()
  for k, v in d.items():
    out |= _keys(v, f'{prefix}{k}.') if isinstance(v, dict) else {prefix + k}
  return out


def test_every_paper_experiment_has_a_config():
  names = {os.path.basename(p)[:-3] for p in EXPERIMENTS}
  assert set(PAPER) | {'tiny'} <= names
  assert set(PARAMETERS) == names, 'every shipped config has its parameter count pinned'


@pytest.mark.parametrize('path', EXPERIMENTS, ids=lambda p: os.path.basename(p)[:-3])
def test_config_loads_builds_and_documents_itself(path):
  name = os.path.basename(path)[:-3]
  config = _load(path)
  assert _keys(config.to_dict()) == _keys(configs.base_config().to_dict())
  configs.validate(config, num_devices=8)  # tests/conftest.py gives 8 devices.
  assert _num_params(config) == PARAMETERS[name]
  optim.make_optimizer(config)
  with open(path) as f:
    doc = f.read().split('"""')[1]
  assert f'python -m pixel_jax.main --config=experiments/{name}.py --workdir=' in doc
  if name in PAPER:
    assert PAPER[name] in doc
  if name in GATED_PAPER:
    assert GATED_PAPER[name] in doc
  if name.startswith('mnist'):
    assert config.data.name in ('binarized_mnist', 'mnist') and config.data.allow_fallback
    assert config.data.num_levels == 2 and config.train.batch_size == 16
    # The CPU default must stay a few minutes long.
    assert config.train.num_steps <= 500


def test_paper_sizes():
  cfg = {os.path.basename(p)[:-3]: _load(p) for p in EXPERIMENTS}
  size = lambda c: (c.model.name, c.model.num_layers, c.model.hidden_channels)
  assert size(cfg['mnist_diagbilstm']) == ('diagonal_bilstm', 7, 16)
  assert size(cfg['mnist_diagbilstm_1x32']) == ('diagonal_bilstm', 1, 32)
  c = cfg['cifar10_diagbilstm']
  assert size(c) == ('diagonal_bilstm', 12, 128) and c.model.out_hidden_channels == 1024
  assert (c.data.num_levels, c.data.num_channels) == (256, 3)
  c = cfg['imagenet32_rowlstm']
  assert size(c) == ('row_lstm', 12, 384) and c.train.batch_size == 64
  c = cfg['imagenet64_rowlstm']
  assert size(c) == ('row_lstm', 4, 512) and c.train.batch_size == 32 and not c.model.residual


def _num_params(config) -> int:
  model = models.get_model(config)
  size, channels = config.data.image_size, config.data.num_channels
  labels = jax.numpy.zeros((1,), int) if config.model.num_classes else None
  shapes = jax.eval_shape(
    functools.partial(model.init, labels_B=labels),
    jax.random.key(0),
    jax.numpy.zeros((1, size, size, channels)),
  )
  return sum(a.size for a in jax.tree.leaves(shapes))


def test_gated_pixelcnn_matches_pixelcnn_size_on_mnist():
  """The two MNIST configs compare at equal size (docs/results.md): within 3%."""
  gated = _num_params(_load(os.path.join(REPO, 'experiments', 'mnist_gated_pixelcnn.py')))
  cnn = _num_params(_load(os.path.join(REPO, 'experiments', 'mnist_pixelcnn.py')))
  assert (gated, cnn) == (67_793, 69_409)
  assert abs(gated - cnn) <= 0.03 * cnn


def test_paper_network_layout():
  """Every paper config has skip connections, residual ones as the paper has them, the head."""
  cfg = {os.path.basename(p)[:-3]: _load(p) for p in EXPERIMENTS}
  no_residual = {'imagenet64_rowlstm'}  # The paper's one model without residual connections.
  for name in PAPER:
    c = cfg[name]
    assert c.model.skip, name
    assert c.model.residual == (name not in no_residual), name
    assert c.model.out_hidden_channels == (32 if name.startswith('mnist') else 1024), name
    assert c.model.out_hidden_layers == 1, name
  ms = cfg['imagenet64_multiscale'].model
  assert ms.skip and not ms.residual and ms.multiscale.small_residual
  assert cfg['mnist_multiscale'].model.skip


def test_command_line_overrides_and_lock():
  path = os.path.join(REPO, 'experiments', 'mnist_rowlstm.py')
  config = _load(path, ('--config.train.num_steps=7', '--config.optim.name=adam'))
  assert config.train.num_steps == 7 and config.optim.name == 'adam'
  with pytest.raises(Exception, match='no_such_field'):  # lock_config: typos are errors.
    _load(path, ('--config.train.no_such_field=1',))


BAD_VALUES = [  # (field, value, what the message says)
  ('seed', 1.5, 'config.seed=1.5 must be an integer'),
  ('data.name', '', "config.data.name='' must be a non-empty string"),
  ('data.image_size', 0, 'config.data.image_size=0 must be an integer >= 1'),
  ('data.num_channels', 2.0, 'config.data.num_channels=2.0 must be an integer >= 1'),
  ('data.num_levels', 16, 'config.data.num_levels=16 is not supported; use one of 2, 256'),
  ('data.binarization', 'otsu', "config.data.binarization='otsu' is not supported"),
  ('data.binarization_seed', -1, 'config.data.binarization_seed=-1'),
  ('data.allow_fallback', 1, 'config.data.allow_fallback=1 must be True or False'),
  ('data.idx_dir', None, 'config.data.idx_dir=None must be a path'),
  ('data.train_split', '', "config.data.train_split=''"),
  ('model.name', 'transformer', "config.model.name='transformer' is not supported"),
  ('model.num_layers', 0, 'config.model.num_layers=0 must be an integer >= 1'),
  ('model.num_layers', True, 'config.model.num_layers=True must be an integer >= 1'),
  ('model.hidden_channels', 0, 'config.model.hidden_channels=0'),
  ('model.out_hidden_channels', -3, 'config.model.out_hidden_channels=-3'),
  ('model.out_hidden_layers', 0, 'config.model.out_hidden_layers=0'),
  ('model.first_kernel_size', 4, 'config.model.first_kernel_size=4 must be an odd'),
  ('model.residual', 'yes', "config.model.residual='yes' must be True or False"),
  ('model.scan_layers', None, 'config.model.scan_layers=None'),
  ('model.wavefront', 'no', "config.model.wavefront='no' must be True or False"),
  ('model.dtype', 'float16', "config.model.dtype='float16' is not supported"),
  ('optim.name', 'sgd', "config.optim.name='sgd' is not supported; use one of 'rmsprop'"),
  ('optim.schedule', 'linear', "config.optim.schedule='linear'"),
  ('optim.learning_rate', -1.0, 'config.optim.learning_rate=-1.0 must be a number > 0'),
  ('optim.learning_rate', float('nan'), 'config.optim.learning_rate=nan'),
  ('optim.warmup_steps', -1, 'config.optim.warmup_steps=-1'),
  ('optim.grad_clip_norm', -1.0, 'config.optim.grad_clip_norm=-1.0 must be a number >= 0'),
  ('optim.weight_decay', -0.1, 'config.optim.weight_decay=-0.1'),
  ('train.num_steps', 0, 'config.train.num_steps=0 must be an integer >= 1'),
  ('train.batch_size', 0, 'config.train.batch_size=0'),
  ('train.keep_checkpoints', 0, 'config.train.keep_checkpoints=0'),
  ('train.eval_every', -1, 'config.train.eval_every=-1 must be an integer >= 0'),
  ('train.sample_every', 2.5, 'config.train.sample_every=2.5'),
  ('eval.batch_size', 0, 'config.eval.batch_size=0 must be an integer >= 1'),
  ('eval.max_examples', -1, 'config.eval.max_examples=-1 must be an integer >= 0'),
  ('sample.num_samples', 0, 'config.sample.num_samples=0 must be an integer >= 1'),
  ('sample.method', 'fast', "config.sample.method='fast' is not supported"),
  ('sample.temperature', -0.5, 'config.sample.temperature=-0.5 must be a number >= 0'),
  ('mesh.num_devices', 0, 'config.mesh.num_devices=0 must be -1'),
]


def _set(config, field, value):
  *path, key = field.split('.')
  section = config
  for name in path:
    section = section[name]
  with section.ignore_type():
    section[key] = value


@pytest.mark.parametrize(
  'field, value, match', BAD_VALUES, ids=[f'{f}={v!r}' for f, v, _ in BAD_VALUES]
)
def test_bad_values_name_the_field(field, value, match):
  config = configs.base_config()
  configs.validate(config)
  _set(config, field, value)
  with pytest.raises(configs.ConfigError, match=re.escape(match)) as info:
    configs.validate(config)
  assert '\n' not in str(info.value)  # One line.


@pytest.mark.parametrize(
  'field, value, match',
  [
    ('small_size', 5, 'config.model.multiscale.small_size=5 must divide'),
    ('small_size', 8, 'config.model.multiscale.small_size=8 must divide'),
    ('core', 'pixelcnn', "config.model.multiscale.core='pixelcnn' is not supported"),
    ('subsample', 'average', "config.model.multiscale.subsample='average'"),
    ('cond_channels', 0, 'config.model.multiscale.cond_channels=0'),
    ('upsampler_layers', 0, 'config.model.multiscale.upsampler_layers=0'),
    ('small_num_layers', 0, 'config.model.multiscale.small_num_layers=0'),
    ('small_residual', 0, 'config.model.multiscale.small_residual=0 must be True or False'),
  ],
)
def test_bad_multiscale_values_name_the_field(field, value, match):
  config = tiny_multiscale.get_config()
  configs.validate(config)
  _set(config, f'model.multiscale.{field}', value)
  with pytest.raises(configs.ConfigError, match=re.escape(match)):
    configs.validate(config)


def test_fields_that_must_agree():
  config = configs.base_config()
  config.data.num_channels, config.data.num_levels = 3, 256
  config.model.hidden_channels = 2
  with pytest.raises(
    configs.ConfigError,
    match=re.escape(
      'config.model.hidden_channels=2 must be an integer >= 3 (config.data.num_channels'
    ),
  ):
    configs.validate(config)
  config = configs.base_config()
  config.data.name = 'mnist_idx'
  with pytest.raises(configs.ConfigError, match='needs config.data.idx_dir'):
    configs.validate(config)
  config.data.idx_dir = '/path/to/mnist'
  configs.validate(config)
  config = configs.base_config()
  config.model.name, config.model.wavefront = 'pixelcnn', True
  with pytest.raises(
    configs.ConfigError,
    match=re.escape("wavefront=True needs a core in ('row_lstm', 'diagonal_bilstm')"),
  ):
    configs.validate(config)
  # The Multi-Scale PixelRNN's networks use its core's wavefront (both recurrent cores have one).
  config.model.name = 'multiscale'
  for core in ('row_lstm', 'diagonal_bilstm'):
    config.model.multiscale.core = core
    configs.validate(config)


def test_devices_are_checked_only_when_given():
  config = configs.base_config()
  config.train.batch_size = 12
  configs.validate(config)  # Restoring a run: its training batch does not matter.
  with pytest.raises(configs.ConfigError, match=r'config.train.batch_size=12 .* 8 devices'):
    configs.validate(config, num_devices=8)
  config.mesh.num_devices = 4
  configs.validate(config, num_devices=8)
  config.mesh.num_devices = 9
  with pytest.raises(
    configs.ConfigError,
    match='config.mesh.num_devices=9 must be -1 or between 1 and the 8 available devices',
  ):
    configs.validate(config, num_devices=8)


def test_a_missing_field_is_named():
  config = configs.base_config()
  del config.sample['temperature']
  with pytest.raises(
    configs.ConfigError, match=re.escape('config.sample.temperature is missing')
  ) as info:
    configs.validate(config)
  assert 'the default is 1.0' in str(info.value)


def test_batch_not_divisible_by_devices(tmp_path):
  config = configs.base_config()
  config.train.batch_size = 12  # tests/conftest.py gives 8 devices.
  with pytest.raises(configs.ConfigError, match=r'config.train.batch_size=12 .* 8 devices'):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.listdir(tmp_path)  # Rejected before anything was written.


def test_sampling_flags_are_validated_before_restoring(tmp_path):
  """A bad --num_samples or --temperature is refused before the model is built."""
  workdir = tmp_path / 'run'
  (workdir / 'checkpoints' / '5').mkdir(parents=True)  # Never read: validation comes first.
  (workdir / 'config.json').write_text(tiny.get_config().to_json())
  with pytest.raises(configs.ConfigError, match='config.sample.num_samples=0'):
    sample_cli.run_sampling(str(workdir), num_samples=0)
  with pytest.raises(configs.ConfigError, match='config.sample.temperature=-1.0'):
    sample_cli.run_sampling(str(workdir), temperature=-1.0)
  assert sorted(os.listdir(workdir)) == ['checkpoints', 'config.json']
