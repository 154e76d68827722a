"""Notebook runtimes (Colab and others): installing the dependencies, finding the accelerator.

The Colab notebook installs pixel_jax itself with `pip install --no-deps SOURCE`, then calls
`install_dependencies()`, which installs the requirements declared in the package metadata and
keeps whatever the runtime already has that satisfies them: Colab's preinstalled
jax/jaxlib/CUDA or TPU plugins stay as they are. Only when jax is missing or older than the
lower bound does it add the `gpu` or `tpu` extra for the hardware that is present, so the new
jax still finds the accelerator.

`describe_backend(jax.devices())` says what training will run on (GPU, TPU v2-v6 or CPU).

Standard library only at import time: this module runs before the dependencies exist.
"""

import dataclasses
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

PACKAGE = 'pixel_jax'
NOTEBOOK_EXTRAS = ('offline',)  # The notebook trains on the bundled MNIST digits.

# Device files that exist on a machine with the accelerator attached, before any jax is
# importable: NVIDIA's driver nodes; Cloud TPU's accel (v2-v4) or VFIO (v5e, v5p, v6e) nodes.
_GPU_FILES = ('/dev/nvidia0', '/proc/driver/nvidia/version')
_TPU_FILES = ('/dev/accel0', '/dev/vfio/0')


def _version_tuple(version: str) -> tuple[int, ...]:
  """'0.10.2' -> (0, 10, 2); a pre-release or local suffix ('0.7.0rc1', '2.1+cu12') is dropped."""
  parts = []
  for piece in version.split('+')[0].split('.'):
    digits = re.match(r'\d+', piece)
    if digits is None:
      break
    parts.append(int(digits.group()))
    if digits.group() != piece:
      break
  return tuple(parts)


@dataclasses.dataclass(frozen=True)
class Requirement:
  """One `name[extras]>=version; extra == "x"` line of the package metadata."""

  name: str
  text: str  # The requirement without its marker, as pip takes it.
  min_version: Optional[str]
  extra: Optional[str]  # The extra it belongs to; None for install_requires.


def parse_requirement(line: str) -> Requirement:
  text, _, marker = line.partition(';')
  extra = re.search(r'extra\s*==\s*["\']([^"\']+)["\']', marker)
  name = re.match(r'\s*([A-Za-z0-9_.\-]+)', text)
  if name is None:
    raise ValueError(f'{line!r} is not a requirement line (name>=version[; marker])')
  minimum = re.search(r'>=\s*([0-9][^,\s]*)', text)
  return Requirement(
    name=name.group(1).lower().replace('_', '-'),
    text=text.strip().replace(' ', ''),
    min_version=minimum.group(1) if minimum else None,
    extra=extra.group(1) if extra else None,
  )


def accelerator_hardware(exists: Callable[[str], bool] = os.path.exists) -> str:
  """'gpu', 'tpu' or 'cpu': the accelerator attached to this machine, from its device files."""
  if any(exists(f) for f in _GPU_FILES):
    return 'gpu'
  if any(exists(f) for f in _TPU_FILES):
    return 'tpu'
  return 'cpu'


def dependency_requirements(
  requires: Iterable[str],
  installed: Mapping[str, Optional[str]],
  hardware: str,
  extras: Sequence[str] = NOTEBOOK_EXTRAS,
) -> list[str]:
  """What to pass to `pip install` so that every requirement holds and nothing good moves.

  Args:
    requires: the package's metadata requirement lines (importlib.metadata.requires).
    installed: installed version of each distribution name (None when absent); only 'jax' is
      read: pip itself leaves every requirement that already holds alone.
    hardware: accelerator_hardware().
    extras: extras to install besides install_requires.
  """
  parsed = [parse_requirement(line) for line in requires]
  chosen = list(extras)
  jax_min = next((r.min_version for r in parsed if r.name == 'jax' and r.extra is None), None)
  jax_version = installed.get('jax')
  jax_too_old = jax_version is None or (
    jax_min is not None and _version_tuple(jax_version) < _version_tuple(jax_min)
  )
  if jax_too_old and hardware in ('gpu', 'tpu'):
    chosen.append(hardware)  # A new jax must come with the plugin for this accelerator.
  return [r.text for r in parsed if r.extra is None or r.extra in chosen]


def _installed_version(name: str) -> Optional[str]:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def install_dependencies(run: Callable[[list[str]], object] = subprocess.check_call) -> list[str]:
  """pip-installs pixel_jax's requirements into this runtime, keeping what already fits."""
  requires = importlib.metadata.requires(PACKAGE) or []
  hardware = accelerator_hardware()
  jax_before = _installed_version('jax')
  wanted = dependency_requirements(requires, {'jax': jax_before}, hardware)
  command = [sys.executable, '-m', 'pip', 'install', '-q', *wanted]
  run(command)
  kept = (
    f'kept the installed jax {jax_before}'
    if jax_before == _installed_version('jax')
    else (f'installed jax {_installed_version("jax")}')
  )
  print(f'pixel_jax dependencies ready ({hardware} machine; {kept}).')
  return command


@dataclasses.dataclass(frozen=True)
class Backend:
  """What jax.devices() offers: platform 'gpu' | 'tpu' | 'cpu', and a readable summary."""

  platform: str
  device_kind: str
  device_count: int
  tpu_generation: Optional[int]  # 2..6 on a TPU ('TPU v5 lite' -> 5), else None.

  @property
  def summary(self) -> str:
    return f'{self.device_count} x {self.device_kind} ({self.platform})'


def describe_backend(devices: Sequence[Any]) -> Backend:
  """Summarises jax.devices(): the platform of the first device, its kind and the count.

  CUDA and ROCm devices both count as 'gpu'. TPU device kinds are 'TPU v2', 'TPU v3',
  'TPU v4', 'TPU v5 lite' (v5e), 'TPU v5' / 'TPU v5p', 'TPU v6 lite' (v6e, Trillium).
  """
  if not devices:
    raise ValueError('jax.devices() is empty: no backend is available.')
  first = devices[0]
  platform = first.platform.lower()
  platform = 'gpu' if platform in ('cuda', 'rocm', 'gpu') else platform
  kind = str(getattr(first, 'device_kind', platform))
  generation = None
  if platform == 'tpu':
    match = re.search(r'v(\d+)', kind.lower())
    generation = int(match.group(1)) if match else None
  return Backend(
    platform=platform, device_kind=kind, device_count=len(devices), tpu_generation=generation
  )


def show_tensorboard(logdir: str) -> None:
  """Opens TensorBoard inline in a notebook with the tensorboard extension (Colab has it)."""
  try:
    from IPython import get_ipython  # pylint: disable=g-import-not-at-top
  except ImportError:
    get_ipython = lambda: None
  shell = get_ipython()
  if shell is None or importlib.util.find_spec('tensorboard') is None:
    print(f'TensorBoard: pip install tensorboard, then tensorboard --logdir {logdir}')
    return
  shell.run_line_magic('load_ext', 'tensorboard')
  shell.run_line_magic('tensorboard', f'--logdir {logdir}')
