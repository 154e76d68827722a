"""The scanned layers against plain per-pixel loops written from docs/design.md sections 3-4."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixel_jax import layers
from pixel_jax.models import diagonal_bilstm


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def cell(gates, c_prev):
  o, f, i, g = np.split(gates, 4)
  c = sigmoid(f) * c_prev + sigmoid(i) * np.tanh(g)
  return sigmoid(o) * np.tanh(c), c


def masked_kernel(p, name, kernel_size, features_in, hidden, groups):
  mask = layers.conv_mask(kernel_size, features_in, 4 * hidden, 'B', groups, out_blocks=4)
  return np.asarray(p[name]['kernel']) * mask, np.asarray(p[name]['bias'])


def row_lstm_loop(p, x, hidden, groups):
  """Row LSTM by explicit loops over rows and columns."""
  b, h, w, f = x.shape
  k_is, b_is = masked_kernel(p, 'input_to_state', (1, 3), f, hidden, groups)
  k_ss = np.asarray(p['state_to_state']).reshape(3, hidden, 4 * hidden)
  out = np.zeros((b, h, w, hidden))
  for n in range(b):
    h_prev = np.tile(np.asarray(p['initial_h']), (w, 1))
    c_prev = np.tile(np.asarray(p['initial_c']), (w, 1))
    for r in range(h):
      h_row, c_row = np.zeros_like(h_prev), np.zeros_like(c_prev)
      for c in range(w):
        gates = b_is.copy()
        for tap, cc in enumerate((c - 1, c, c + 1)):
          if 0 <= cc < w:
            gates += x[n, r, cc] @ k_is[0, tap] + h_prev[cc] @ k_ss[tap]
        h_row[c], c_row[c] = cell(gates, c_prev[c])
      h_prev, c_prev = h_row, c_row
      out[n, r] = h_row
  return out


def diagonal_direction_loop(p, x, hidden, groups, d, mirrored):
  """One direction of the Diagonal BiLSTM in image coordinates, no skew: the state at
  (r, c) reads the state above and the state to the left (to the right if mirrored)."""
  b, h, w, f = x.shape
  name = 'input_to_state_' + ('bwd' if mirrored else 'fwd')
  k_is, b_is = masked_kernel(p, name, (1, 1), f, hidden, groups)
  k_above, k_side = np.split(np.asarray(p['state_to_state'])[d], 2)
  h0, c0 = np.asarray(p['initial_h'])[d], np.asarray(p['initial_c'])[d]
  hs = np.zeros((b, h, w, hidden))
  cs = np.zeros((b, h, w, hidden))
  cols = range(w - 1, -1, -1) if mirrored else range(w)
  for n in range(b):
    for r in range(h):
      for c in cols:
        side = c + 1 if mirrored else c - 1
        h_side, c_side = (hs[n, r, side], cs[n, r, side]) if 0 <= side < w else (h0, c0)
        h_above = hs[n, r - 1, c] if r > 0 else np.zeros(hidden)
        gates = x[n, r, c] @ k_is[0, 0] + b_is + h_above @ k_above + h_side @ k_side
        hs[n, r, c], cs[n, r, c] = cell(gates, c_side)
  return hs


def diagonal_bilstm_loop(p, x, hidden, groups):
  fwd = diagonal_direction_loop(p, x, hidden, groups, 0, mirrored=False)
  bwd = diagonal_direction_loop(p, x, hidden, groups, 1, mirrored=True)
  out = fwd.copy()
  out[:, 1:] += bwd[:, :-1]  # The right-to-left output, one row down.
  return out


def _check_scan_matches_loop(module_cls, loop, groups, shape, hidden=6, features=6):
  module = module_cls(hidden=hidden, num_groups=groups)
  x = jax.random.normal(jax.random.key(0), (2, *shape, features))
  v = module.init(jax.random.key(1), x)
  leaves, tree = jax.tree.flatten(v)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  v = jax.tree.unflatten(
    tree, [leaf + 0.2 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
  )
  got = jax.jit(module.apply)(v, x)
  want = loop(jax.tree.map(np.asarray, v['params']), np.asarray(x, np.float64), hidden, groups)
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize('shape', [(5, 5), (3, 6)])
@pytest.mark.parametrize('groups', [1, 3])
def test_row_lstm_scan_matches_loop(groups, shape):
  _check_scan_matches_loop(layers.RowLSTM, row_lstm_loop, groups, shape)


@pytest.mark.parametrize('shape', [(5, 5), (3, 6)])
@pytest.mark.parametrize('groups', [1, 3])
def test_diagonal_bilstm_scan_matches_loop(groups, shape):
  _check_scan_matches_loop(layers.DiagonalBiLSTM, diagonal_bilstm_loop, groups, shape)


@pytest.mark.parametrize('h, w', [(28, 28), (5, 5), (3, 6), (6, 3), (32, 32), (64, 64), (7, 30)])
def test_bands_cover_every_real_cell_and_its_neighbours(h, w):
  """The Diagonal BiLSTM scans each chunk of skewed columns over a band of rows only."""
  chunks = diagonal_bilstm.band_chunks(w + h - 1, h, w)
  assert [t for t0, t1, _, _ in chunks for t in range(t0, t1)] == list(range(w + h - 1))
  for t0, t1, lo, hi in chunks:
    for t in range(t0, t1):
      for r in range(h):
        if 0 <= t - r < w:  # A real pixel: it and the pixel above it are in the band.
          assert lo <= r < hi, (t, r)
          if r > 0:
            assert lo <= r - 1, (t, r)
      # Rows below the band are still left of the image (held at the initial state).
      assert all(t < r for r in range(hi, h))


@pytest.mark.parametrize('h, w', [(4, 4), (3, 5), (5, 2)])
def test_skew_layout_and_round_trip(h, w):
  x = jnp.arange(2 * h * w * 3, dtype=jnp.float32).reshape(2, h, w, 3) + 1
  s = layers.skew(x)
  assert s.shape == (2, h, w + h - 1, 3)
  for r in range(h):
    np.testing.assert_array_equal(s[:, r, r : r + w], x[:, r])  # Row r shifted right by r.
    assert float(jnp.abs(s[:, r, :r]).sum() + jnp.abs(s[:, r, r + w :]).sum()) == 0
  np.testing.assert_array_equal(layers.unskew(s, w), x)


def test_shift_down():
  x = jnp.arange(12.0).reshape(1, 4, 3)
  y = layers.shift_down(x, axis=1)
  np.testing.assert_array_equal(y[0, 0], 0)
  np.testing.assert_array_equal(y[0, 1:], x[0, :-1])


@pytest.mark.parametrize(
  'kernel_size, mask_type, groups',
  [((3, 3), 'B', 1), ((7, 7), 'A', 1), ((5, 5), 'A', 3), ((3, 3), 'B', 3), ((4, 2), 'A', 1)],
)
def test_masked_conv_op_matches_im2col(kernel_size, mask_type, groups):
  """The convolution-op form of a masked convolution: the same outputs and gradients (input
  and parameters) as the im2col form, from the same parameters."""
  x = jax.random.normal(jax.random.key(0), (2, 6, 5, 6))
  forms = {
    conv_op: layers.MaskedConv2D(6, kernel_size, mask_type, groups, conv_op=conv_op)
    for conv_op in (False, True)
  }
  params = forms[False].init(jax.random.key(1), x)
  assert jax.tree.structure(params) == jax.tree.structure(forms[True].init(jax.random.key(1), x))
  params = jax.tree.map(lambda p: p + 0.1, params)  # A non-zero bias.
  loss = lambda form: lambda p, x: jnp.sum(jnp.sin(form.apply(p, x)))
  outputs = {k: form.apply(params, x) for k, form in forms.items()}
  grads = {k: jax.grad(loss(form), argnums=(0, 1))(params, x) for k, form in forms.items()}
  np.testing.assert_allclose(outputs[True], outputs[False], rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(grads[True]), jax.tree.leaves(grads[False])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
