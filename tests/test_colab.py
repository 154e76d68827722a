"""Notebook runtimes: the install step and backend detection, in simulated environments."""

import configparser
import dataclasses
import json
import pathlib
import subprocess
import sys

import pytest

from pixel_jax import colab

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / 'notebooks' / 'pixel_jax_colab.ipynb'


def _metadata_requires() -> list[str]:
  """setup.cfg's requirements as the package metadata lists them (importlib.metadata.requires)."""
  cfg = configparser.ConfigParser()
  cfg.read(REPO / 'setup.cfg')
  lines = lambda text: [line.strip() for line in text.splitlines() if line.strip()]
  requires = lines(cfg['options']['install_requires'])
  for extra, text in cfg['options.extras_require'].items():
    requires += [f'{r}; extra == "{extra}"' for r in lines(text)]
  return requires


@dataclasses.dataclass
class Device:  # The two attributes of a jax Device that describe_backend reads.
  platform: str
  device_kind: str


@pytest.mark.parametrize(
  'platform, kind, count, expected, generation',
  [
    ('cpu', 'cpu', 1, 'cpu', None),
    ('gpu', 'Tesla T4', 1, 'gpu', None),
    ('cuda', 'NVIDIA A100-SXM4-40GB', 8, 'gpu', None),
    ('rocm', 'AMD Instinct MI300X', 8, 'gpu', None),
    ('tpu', 'TPU v2', 8, 'tpu', 2),
    ('tpu', 'TPU v3', 8, 'tpu', 3),
    ('tpu', 'TPU v4', 4, 'tpu', 4),
    ('tpu', 'TPU v5 lite', 8, 'tpu', 5),
    ('tpu', 'TPU v5p', 4, 'tpu', 5),
    ('tpu', 'TPU v6 lite', 8, 'tpu', 6),
  ],
)
def test_describe_backend(platform, kind, count, expected, generation):
  backend = colab.describe_backend([Device(platform, kind)] * count)
  assert (backend.platform, backend.device_count, backend.tpu_generation) == (
    expected,
    count,
    generation,
  )
  assert backend.summary == f'{count} x {kind} ({expected})'


def test_describe_backend_of_this_machine():
  import jax  # pylint: disable=g-import-not-at-top

  backend = colab.describe_backend(jax.devices())
  assert backend.platform == jax.default_backend() and backend.device_count == jax.device_count()


@pytest.mark.parametrize(
  'files, expected',
  [
    ((), 'cpu'),
    (('/dev/nvidia0',), 'gpu'),
    (('/proc/driver/nvidia/version',), 'gpu'),
    (('/dev/accel0',), 'tpu'),  # TPU v2-v4.
    (('/dev/vfio/0',), 'tpu'),  # TPU v5e, v5p, v6e.
  ],
)
def test_accelerator_hardware(files, expected):
  assert colab.accelerator_hardware(exists=lambda path: path in files) == expected


@pytest.mark.parametrize(
  'hardware, jax_version, accelerator_jax',
  [
    ('gpu', '0.7.2', None),  # Colab's own CUDA jax satisfies the bound: kept.
    ('tpu', '0.10.2', None),
    ('gpu', '0.5.3', 'jax[cuda12]>=0.6.0'),  # Too old: the new jax comes with its plugin.
    ('tpu', None, 'jax[tpu]>=0.6.0'),
    ('cpu', '0.4.30', None),
  ],
)
def test_dependency_requirements(hardware, jax_version, accelerator_jax):
  requires = _metadata_requires()
  wanted = colab.dependency_requirements(requires, {'jax': jax_version}, hardware)
  base = [colab.parse_requirement(r) for r in requires]
  assert [r.text for r in base if r.extra in (None, 'offline')] == [
    w for w in wanted if w != accelerator_jax
  ]
  assert 'jax>=0.6.0' in wanted
  assert (
    (accelerator_jax in wanted)
    if accelerator_jax
    else not any(w.startswith('jax[') for w in wanted)
  )
  assert not any(r.extra == 'dev' and r.text in wanted for r in base)


def test_parse_requirement():
  r = colab.parse_requirement('etils[epath]>=1.9.1; extra == "offline"')
  assert (r.name, r.text, r.min_version, r.extra) == (
    'etils',
    'etils[epath]>=1.9.1',
    '1.9.1',
    'offline',
  )
  assert colab.parse_requirement('absl-py').min_version is None


@pytest.mark.slow
def test_install_dependencies_keeps_this_environment():
  """Run against this venv (a pip dry run): every requirement holds, so nothing would change."""
  commands = []

  def dry_run(command):
    commands.append(command)
    report = subprocess.run(
      command + ['--dry-run', '--report', '-', '--no-index'],
      check=True,
      capture_output=True,
      text=True,
    ).stdout
    assert json.loads(report)['install'] == [], report[:2000]

  colab.install_dependencies(run=dry_run)
  assert commands and commands[0][:4] == [sys.executable, '-m', 'pip', 'install']


def _cell(cell_id: str) -> str:
  cells = json.loads(NOTEBOOK.read_text())['cells']
  return ''.join(next(c for c in cells if c.get('id') == cell_id)['source'])


@pytest.mark.slow
def test_notebook_install_cell_without_a_source_says_what_to_set(tmp_path):
  """A fresh runtime (no pixel_jax importable) with PIXEL_JAX_SOURCE left empty."""
  code = _cell('source') + '\n' + _cell('install')
  # -S -E: no site-packages and no PYTHONPATH, so pixel_jax is not importable.
  result = subprocess.run(
    [sys.executable, '-S', '-E', '-c', code],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=60,
    check=False,
  )
  assert result.returncode == 1
  assert result.stderr.strip() == (
    'Set PIXEL_JAX_SOURCE in the cell above to a git URL of your pixel_jax copy or the path '
    'of an uploaded wheel/sdist, then run again.'
  )
