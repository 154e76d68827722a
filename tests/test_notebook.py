"""The Colab notebook runs top to bottom on CPU (the install cell is skipped: pixel_jax is
already importable), with TensorBoard offered inline."""

import os

import nbclient
import nbformat
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, 'notebooks', 'pixel_jax_colab.ipynb')


@pytest.mark.slow
def test_notebook_runs_on_cpu():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
    nb,
    timeout=120,
    kernel_name='python3',
    resources={'metadata': {'path': os.path.dirname(NOTEBOOK)}},
  )
  client.execute()  # Raises CellExecutionError, with the cell's traceback, on any failure.
  text = '\n'.join(
    o.get('text', '') for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])
  )
  assert 'pixel_jax from' in text and '(cpu)' in text
  assert 'loss ' in text and 'validation' in text
  images = [
    o
    for c in nb.cells
    if c.cell_type == 'code'
    for o in c.get('outputs', [])
    if 'image/png' in o.get('data', {})
  ]
  assert len(images) == 2  # The training grid and the fresh samples.
  tensorboard = next(c for c in nb.cells if c.get('id') == 'tensorboard')
  assert tensorboard.outputs  # TensorBoard inline, or how to start it without the extension.
