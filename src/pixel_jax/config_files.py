"""Finds experiment config files for `--config`: a short name, a path in a clone, or any file.

The configs in the repository's experiments/ folder are installed as the package
pixel_jax.experiments (one copy: setup.py maps the package onto that folder), so each of

  --config=mnist_rowlstm
  --config=experiments/mnist_rowlstm.py            (the path inside a clone)
  --config=pixel_jax/experiments/mnist_rowlstm.py  (the path inside the installed package)

works from any directory, with a clone (editable install or PYTHONPATH=src) or a wheel. A value
that names an existing file is used as it is, so your own config files work too. ml_collections'
`path:argument` suffix is kept. A config file that is missing or does not load, and an override
that names no field of the config (with a "did you mean") or has the wrong type, end the
program with one line.
"""

import difflib
import importlib.util
import os
import pathlib
import sys
from typing import Any, Optional, Sequence

from absl import flags

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
  return sorted(
    {p.stem for d in experiments_dirs() for p in d.glob('*.py') if not p.name.startswith('_')}
  )


def resolve(value: str) -> str:
  """Returns the config file path for a --config value, or exits with one line if none."""
  path, colon, argument = value.partition(':')
  if os.path.isfile(value) or os.path.isfile(path):
    return value
  name = path
  for prefix in _PREFIXES:
    if name.startswith(prefix):
      name = name[len(prefix) :]
      break
  name = name.removesuffix('.py')
  for folder in experiments_dirs():
    candidate = folder / f'{name}.py'
    if '/' not in name and candidate.is_file():
      return f'{candidate}{colon}{argument}'
  sys.exit(
    f'pixel_jax: error: --config={value}: no such file and no shipped config of that '
    f'name; use a config file path or one of: {", ".join(names())}'
  )


def resolve_argv(argv: Sequence[str]) -> list[str]:
  """argv with every `--config=VALUE` / `--config VALUE` resolved to a file path."""
  out, i = [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith('--config='):
      arg = '--config=' + resolve(arg[len('--config=') :])
    elif arg == '--config' and i + 1 < len(argv):
      out.append(arg)
      i += 1
      arg = resolve(argv[i])
    out.append(arg)
    i += 1
  return out


def config_error_line(error: BaseException, argv: list[str]) -> str:
  """One line for a --config file or --config.* override that failed to load or apply."""
  config_arg = next((a for a in argv if a.startswith('--config=')), None)
  spec = config_arg.split('=', 1)[1] if config_arg else ''
  path = spec.split(':', 1)[0]
  chain: list[BaseException] = []
  e: Optional[BaseException] = error
  while e is not None and e not in chain:
    chain.append(e)
    e = e.__cause__ or e.__context__
  for e in chain:
    if isinstance(e, SyntaxError):
      return f'--config={path}: syntax error at line {e.lineno}: {e.msg}.'
  if path is not None and not os.path.isfile(path):
    return f'--config={path}: no such config file.'
  for arg in argv:  # An override naming a field the config does not have.
    if arg.startswith('--config.'):
      message = _bad_override(arg, spec)
      if message:
        return message
  last = str(chain[-1]).strip().splitlines()
  return f'--config={path}: {type(chain[-1]).__name__}: {last[-1] if last else ""}'


def _load_config_file(spec: str) -> Any:
  """get_config() of a config file 'path.py' or 'path.py:argument', without overrides."""
  path, _, argument = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('pixel_jax_config_file', path)
  if module_spec is None or module_spec.loader is None:
    raise ImportError(f'{path} is not a Python file')
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(argument) if argument else module.get_config()


def _bad_override(arg: str, config_spec: str) -> Optional[str]:
  """'--config.train.num_step=5: config.train has no field num_step; did you mean
  config.train.num_steps?' (or a value of the wrong type), None for a good override."""
  dotted, _, value = arg[len('--') :].partition('=')
  try:
    config = _load_config_file(config_spec)
  except Exception:  # pylint: disable=broad-except
    return None
  node, parts = config, dotted.split('.')[1:]
  for k, key in enumerate(parts):
    fields = list(node.keys()) if hasattr(node, 'keys') else []
    if key not in fields:
      where = '.'.join(['config'] + parts[:k])
      close = difflib.get_close_matches(key, fields, n=1)
      hint = (
        f'; did you mean {where}.{close[0]}?'
        if close
        else (f'; its fields: {", ".join(sorted(fields))}.' if fields else '.')
      )
      return f'{arg}: {where} has no field {key!r}{hint}'
    node = node[key]
  if isinstance(node, (int, float)) and not isinstance(node, bool):
    try:
      type(node)(value)
    except ValueError:
      return f'{arg}: {dotted} must be {"an int" if isinstance(node, int) else "a float"}.'
  return None


def parse_flags(argv: Sequence[str]) -> list[str]:
  """An absl `app.run(..., flags_parser=parse_flags)` that accepts short config names and
  reports a --config file or override that fails to load or apply in one line."""
  argv = resolve_argv(argv)
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    plain = isinstance(e, flags.Error) and (e.__cause__ or e.__context__) is None
    if plain and 'config.' not in str(e):
      sys.exit(f'pixel_jax: error: {e}')  # A plain flag error (unknown flag, bad value).
    sys.exit(f'pixel_jax: error: {config_error_line(e, argv)}')
