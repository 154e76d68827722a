"""Locates data files shipped inside other installed packages, without importing them."""

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
