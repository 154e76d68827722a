"""An independent reference for which earlier sub-pixels each model can see.

Boolean set propagation, written from the description of each layer in docs/design.md
sections 2-5 and sharing no code with pixel_jax. A map f has f[r, c, g] = the set (a bool
array [H, W, C]) of input sub-pixels that its colour-group-g features at position (r, c)
depend on.
- A read of another position q (a non-centre tap, or an unmasked recurrent state) sees
  every group there: all_groups(f)[q].
- A read of the same position through a mask-B centre tap gives group g the groups <= g:
  centre(f)[p, g].
"""

import numpy as np


def centre(f):
  """Mask-B centre tap: group g reads groups 0..g of the same position."""
  return np.logical_or.accumulate(f, axis=2)


def all_groups(f):
  """Any tap of another position, or an unmasked state, reads every group."""
  return np.broadcast_to(f.any(axis=2, keepdims=True), f.shape)


def first_layer(h, w, c, k):
  """k x k mask-A convolution over the image: f[r, c, g] for g in colour channels."""
  f = np.zeros((h, w, c, h, w, c), bool)
  a = k // 2
  for r in range(h):
    for col in range(w):
      f[r, col, :, max(r - a, 0) : r, max(col - a, 0) : col + a + 1, :] = True
      f[r, col, :, r, max(col - a, 0) : col, :] = True
      for g in range(c):
        f[r, col, g, r, col, :g] = True  # Mask A: earlier colours of the same pixel.
  return f


def row_lstm(f):
  """Input-to-state 1x3 mask B reads (r, c-1) and (r, c); the state reads row r-1 at
  c-1, c, c+1 (unmasked)."""
  h, w = f.shape[:2]
  fc, fa = centre(f), all_groups(f)
  s = np.zeros_like(f)
  for r in range(h):
    for c in range(w):
      s[r, c] = fc[r, c]
      if c > 0:
        s[r, c] |= fa[r, c - 1]
      if r > 0:
        for cc in (c - 1, c, c + 1):
          if 0 <= cc < w:
            s[r, c] |= all_groups(s[r - 1 : r, cc : cc + 1])[0, 0]
  return s


def diagonal_bilstm(f):
  """Forward state reads the states above and to the left; the mirrored direction reads
  above and to the right, and reaches (r, c) from (r-1, c) through the one-row shift."""
  h, w = f.shape[:2]
  fc = centre(f)
  fwd, bwd = np.zeros_like(f), np.zeros_like(f)
  for r in range(h):
    for c in range(w):
      fwd[r, c] = fc[r, c]
      for rr, cc in ((r - 1, c), (r, c - 1)):
        if rr >= 0 and cc >= 0:
          fwd[r, c] |= fwd[rr, cc].any(axis=0)
    for c in reversed(range(w)):
      bwd[r, c] = fc[r, c]
      for rr, cc in ((r - 1, c), (r, c + 1)):
        if rr >= 0 and cc < w:
          bwd[r, c] |= bwd[rr, cc].any(axis=0)
  out = fwd.copy()
  out[1:] |= bwd[:-1]
  return out


def pixelcnn_block(f, k=3):
  """1x1 mask B, k x k mask B, 1x1 mask B: the centre plus the causal taps around it."""
  h, w = f.shape[:2]
  fc, fa = centre(f), all_groups(f)
  out = fc.copy()
  a = k // 2
  for r in range(h):
    for c in range(w):
      for rr in range(r - a, r + 1):
        for cc in range(c - a, c + a + 1):
          if (rr, cc) < (r, c) and 0 <= rr < h and 0 <= cc < w:
            out[r, c] |= fa[rr, cc]
  return out


def gated_pixelcnn_block(v, hz, k=3):
  """Gated PixelCNN layer on the vertical and horizontal maps (docs/design.md section 5).

  Vertical: a (k//2 + 1) x k unmasked convolution over rows r - k//2 .. r (every group,
  columns c - k//2 .. c + k//2). Horizontal: a 1 x (k//2 + 1) mask-B convolution over
  (r, c - k//2 .. c), plus the vertical pre-activations of (r - 1, c) (unmasked), then a
  1x1 mask B. Returns (vertical, horizontal).
  """
  h, w = v.shape[:2]
  va = all_groups(v)
  hc, ha = centre(hz), all_groups(hz)
  v_out = np.zeros_like(v)
  a = k // 2
  for r in range(h):
    for c in range(w):
      for rr in range(max(r - a, 0), r + 1):
        for cc in range(max(c - a, 0), min(c + a + 1, w)):
          v_out[r, c] |= va[rr, cc]
  h_out = hc.copy()
  for r in range(h):
    for c in range(w):
      for cc in range(max(c - a, 0), c):
        h_out[r, c] |= ha[r, cc]
      if r > 0:
        h_out[r, c] |= v_out[r - 1, c]
  return v_out, centre(h_out) | hz


def gated_pixelcnn_network(h, w, c, num_layers, first_kernel_size=7):
  """The Gated PixelCNN's sets. First layer: the horizontal stack is the k x k mask-A
  convolution, the vertical stack an unmasked (k//2 + 1) x k convolution over the image
  rows r - k//2 .. r. The head reads the horizontal stack (or the skip sum of every
  layer's horizontal output, the same sets)."""
  hz = first_layer(h, w, c, first_kernel_size)
  v = np.zeros_like(hz)
  a = first_kernel_size // 2
  for r in range(h):
    for col in range(w):
      v[r, col, :, max(r - a, 0) : r + 1, max(col - a, 0) : col + a + 1, :] = True
  for _ in range(num_layers):
    v, hz = gated_pixelcnn_block(v, hz)
  return centre(hz)


BLOCKS = {'row_lstm': row_lstm, 'diagonal_bilstm': diagonal_bilstm, 'pixelcnn': pixelcnn_block}


def network(name, h, w, c, num_layers, first_kernel_size=7):
  """Sub-pixels each output sub-pixel's logits can depend on: bool [H, W, C, H, W, C].

  Every block ends in a 1x1 mask-B convolution (centre); with or without the residual the
  sets only grow, and skip connections add nothing the last block lacks.
  """
  if name == 'gated_pixelcnn':
    return gated_pixelcnn_network(h, w, c, num_layers, first_kernel_size)
  f = first_layer(h, w, c, first_kernel_size)
  for _ in range(num_layers):
    f = centre(BLOCKS[name](f)) | f
  return centre(f)  # The output head: 1x1 mask-B convolutions.


def earlier(h, w, c):
  """Sub-pixels strictly before each sub-pixel in raster-then-colour order."""
  n = h * w * c
  return np.tril(np.ones((n, n), bool), -1).reshape(h, w, c, h, w, c)
