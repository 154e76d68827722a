"""Experiment configs: they load, keep base_config's fields, build, and reject bad values."""

import glob
import os
import re

from absl import flags
from ml_collections import config_flags
import pytest

from pixel_jax import configs
from pixel_jax import models
from pixel_jax import optim
from pixel_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = sorted(glob.glob(os.path.join(REPO, 'experiments', '*.py')))
PAPER = {  # The paper's test numbers (docs/design.md section 6).
    'mnist_diagbilstm': '79.20 nats', 'mnist_diagbilstm_1x32': '80.75 nats',
    'mnist_rowlstm': '80.54 nats', 'mnist_pixelcnn': '81.30 nats',
    'cifar10_rowlstm': '3.07 bits/dim', 'cifar10_diagbilstm': '3.00 bits/dim',
    'cifar10_pixelcnn': '3.14 bits/dim', 'imagenet32_rowlstm': '3.86 bits/dim',
    'imagenet64_rowlstm': '3.63 bits/dim',
}


def _load(path: str, argv: tuple[str, ...] = ()):
  """Loads a config file the way main.py does, with command-line overrides."""
  values = flags.FlagValues()
  full_argv = ['prog', f'--config={path}', *argv]
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=values,
                                  lock_config=True, sys_argv=full_argv)
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


@pytest.mark.parametrize('path', EXPERIMENTS, ids=lambda p: os.path.basename(p)[:-3])
def test_config_loads_builds_and_documents_itself(path):
  name = os.path.basename(path)[:-3]
  config = _load(path)
  assert _keys(config.to_dict()) == _keys(configs.base_config().to_dict())
  models.validate_config(config)
  optim.make_optimizer(config)
  train.validate_config(config)
  with open(path) as f:
    doc = f.read().split('"""')[1]
  assert f'python -m pixel_jax.main --config=experiments/{name}.py --workdir=' in doc
  if name in PAPER:
    assert PAPER[name] in doc
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


def test_paper_network_layout():
  """Every paper config has skip connections, residual ones as the paper has them, the head."""
  cfg = {os.path.basename(p)[:-3]: _load(p) for p in EXPERIMENTS}
  no_residual = {'imagenet64_rowlstm'}  # The paper's one model without residual connections.
  for name in PAPER:
    c = cfg[name]
    assert c.model.skip, name
    assert c.model.residual == (name not in no_residual), name
    assert c.model.out_hidden_channels == (32 if name.startswith('mnist') else 1024), name
  ms = cfg['imagenet64_multiscale'].model
  assert ms.skip and not ms.residual and ms.multiscale.small_residual
  assert cfg['mnist_multiscale'].model.skip


def test_command_line_overrides_and_lock():
  path = os.path.join(REPO, 'experiments', 'mnist_rowlstm.py')
  config = _load(path, ('--config.train.num_steps=7', '--config.optim.name=adam'))
  assert config.train.num_steps == 7 and config.optim.name == 'adam'
  with pytest.raises(Exception, match='no_such_field'):  # lock_config: typos are errors.
    _load(path, ('--config.train.no_such_field=1',))


@pytest.mark.parametrize('field, value, match', [
    ('optim.name', 'sgd', "config.optim.name='sgd' is unknown"),
    ('optim.schedule', 'linear', "config.optim.schedule='linear'"),
    ('optim.learning_rate', -1.0, 'config.optim.learning_rate=-1.0'),
    ('train.num_steps', 0, 'config.train.num_steps=0'),
    ('model.name', 'transformer', "config.model.name='transformer'"),
    ('sample.method', 'fast', "config.sample.method='fast'"),
])
def test_bad_values_name_the_field(field, value, match):
  config = configs.base_config()
  section, key = field.split('.')
  config[section][key] = value
  with pytest.raises(train.ConfigError, match=re.escape(match)):
    train.validate_config(config)


def test_batch_not_divisible_by_devices(tmp_path):
  config = configs.base_config()
  config.train.batch_size = 12  # tests/conftest.py gives 8 devices.
  with pytest.raises(train.ConfigError, match=r'config.train.batch_size=12 .* 8 devices'):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.listdir(tmp_path)  # Rejected before anything was written.
