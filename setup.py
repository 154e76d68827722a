"""Package layout (metadata and dependencies are in setup.cfg).

The experiment configs in experiments/ ship inside the package as pixel_jax.experiments, so
`python -m pixel_jax.main --config=mnist_rowlstm` works from any install; the repository keeps
one copy of them, at the top level.
"""

import setuptools

setuptools.setup(
  packages=setuptools.find_packages('src') + ['pixel_jax.experiments'],
  package_dir={'': 'src', 'pixel_jax.experiments': 'experiments'},
)
