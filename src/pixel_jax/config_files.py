"""Finds experiment config files for `--config`: a short name, a path in a clone, or any file.

The configs in the repository's experiments/ folder are installed as the package
pixel_jax.experiments (one copy: setup.py maps the package onto that folder), so each of

  --config=mnist_rowlstm
  --config=experiments/mnist_rowlstm.py            (the path inside a clone)
  --config=pixel_jax/experiments/mnist_rowlstm.py  (the path inside the installed package)

works from any directory, with a clone (editable install or PYTHONPATH=src) or a wheel. A value
that names an existing file is used as it is, so your own config files work too. ml_collections'
`path:argument` suffix is kept.
"""

import os
import pathlib
import sys
from typing import Sequence

from absl import app

_PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
_PREFIXES = ('pixel_jax/experiments/', 'experiments/')


def experiments_dirs() -> list[pathlib.Path]:
  """Folders holding the shipped configs: the installed package's, or the clone's."""
  candidates = (
      _PACKAGE_DIR / 'experiments',  # A wheel: site-packages/pixel_jax/experiments.
      _PACKAGE_DIR.parents[1] / 'experiments',  # A clone: src/pixel_jax -> experiments/.
  )
  return [d for d in candidates if (d / '__init__.py').is_file()]


def names() -> list[str]:
  """The shipped configs' short names (file names without .py), sorted."""
  return sorted({p.stem for d in experiments_dirs() for p in d.glob('*.py')
                 if not p.name.startswith('_')})


def resolve(value: str) -> str:
  """Returns the config file path for a --config value, or exits with one line if none."""
  path, colon, argument = value.partition(':')
  if os.path.isfile(value) or os.path.isfile(path):
    return value
  name = path
  for prefix in _PREFIXES:
    if name.startswith(prefix):
      name = name[len(prefix):]
      break
  name = name.removesuffix('.py')
  for folder in experiments_dirs():
    candidate = folder / f'{name}.py'
    if '/' not in name and candidate.is_file():
      return f'{candidate}{colon}{argument}'
  sys.exit(f'pixel_jax: error: --config={value}: no such file and no shipped config of that '
           f'name; use a config file path or one of: {", ".join(names())}')


def resolve_argv(argv: Sequence[str]) -> list[str]:
  """argv with every `--config=VALUE` / `--config VALUE` resolved to a file path."""
  out, i = [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith('--config='):
      arg = '--config=' + resolve(arg[len('--config='):])
    elif arg == '--config' and i + 1 < len(argv):
      out.append(arg)
      i += 1
      arg = resolve(argv[i])
    out.append(arg)
    i += 1
  return out


def parse_flags(argv: Sequence[str]) -> list[str]:
  """An absl `app.run(..., flags_parser=parse_flags)` that accepts short config names."""
  return app.parse_flags_with_usage(resolve_argv(argv))
