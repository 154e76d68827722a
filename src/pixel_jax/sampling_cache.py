"""Per-layer caches that make one sampling step cost one position (SPEC.md section 8).

The naive sampler runs the whole network over the whole image for every sub-pixel. Here
each layer keeps what later positions will read of it, and a step computes every layer at
the ONE new position (r, c) only:

* Masked convolutions (the 7x7 mask-A input layer, the PixelCNN 3x3 kernels): the input of
  each spatial convolution is stored in a zero-padded map (Ramachandran et al. 2017); its
  output at (r, c) is the masked kernel applied to the window of rows r - k//2 .. r. Rows
  below the centre are never read (their mask is zero), so they are not even sliced. 1x1
  convolutions, ReLUs, residuals, skips and the output head are pointwise.
* Row LSTM: the state at (r, c) reads the previous row's h at c-1, c, c+1 and c at c, and
  the 1x3 mask-B input-to-state kernel reads the layer input at (r, c-1) and (r, c) (its
  right tap is masked), so a maps of h/c (with the learned initial state as row -1) and of
  the layer input are enough: the whole recurrence costs one position per step.
* Diagonal BiLSTM, left-to-right direction: the state at (r, c) reads h above (r-1, c) and
  h, c to the left (r, c-1). Left of column 0 the scan over skewed columns runs through
  zero-input padding, so the state there depends on the weights only; it is precomputed
  once per call for every row (`diagonal_boundary`). Right-to-left direction: its output at
  (r, c) only enters row r + 1 (combine_directions), so once row r is finished it is run
  over that row, for every layer at once, W sequential steps per row.

Colour: a pixel is visited once per channel; each visit recomputes the position with the
sub-pixels sampled so far. By the masks, the features at (r, c) never depend on the last
channel of (r, c), so after the last visit every cache holds exactly the naive features.

Every function mirrors the casts of the Flax modules (MaskedConv2D casts inputs and masked
kernels to the compute dtype; the LSTM cell runs in float32), so both samplers compute the
same numbers up to the summation order of the convolutions.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from pixel_jax.models import diagonal_bilstm
from pixel_jax.models import layers
from pixel_jax.models import masks
from pixel_jax.models import pixelcnn
from pixel_jax.models import pixelrnn

Array = jnp.ndarray
Params = dict[str, Any]
CORES = ('row_lstm', 'diagonal_bilstm', 'pixelcnn')


@dataclasses.dataclass(frozen=True)
class NetSpec:
  """The static facts of an AutoregressiveNetwork that the cached sampler needs."""
  core: str  # 'row_lstm' | 'diagonal_bilstm' | 'pixelcnn'
  num_layers: int
  hidden: int
  num_channels: int
  num_levels: int
  size: int
  first_kernel_size: int
  kernel_size: int  # PixelCNN's spatial kernel; unused by the PixelRNN cores.
  residual: bool
  skip: bool
  scan_layers: bool
  dtype: Any


def spec_from_model(model: Any) -> NetSpec:
  """Reads a NetSpec from a model built by models.get_model; raises for other models."""
  kwargs = dict(getattr(model, 'block_kwargs', ()) or ())
  block_cls = getattr(model, 'block_cls', None)
  if block_cls is pixelcnn.ConvBlock:
    core = 'pixelcnn'
  elif block_cls is pixelrnn.RecurrentBlock and kwargs.get('core') in CORES:
    core = kwargs['core']
  else:
    raise ValueError(f"method='cached' supports the networks of models.get_model "
                     f"({', '.join(CORES)}); got {type(model).__name__} with block "
                     f"{getattr(block_cls, '__name__', block_cls)}. Use method='naive'.")
  return NetSpec(core=core, num_layers=model.num_layers, hidden=model.hidden_channels,
                 num_channels=model.num_channels, num_levels=model.num_levels,
                 size=model.image_size, first_kernel_size=model.first_kernel_size,
                 kernel_size=kwargs.get('kernel_size', 3),
                 residual=kwargs.get('residual', True), skip=model.skip,
                 scan_layers=model.scan_layers, dtype=model.dtype)


def block_params(spec: NetSpec, params: Params) -> list[Params]:
  """One parameter dict per block, whether the blocks were scanned (stacked) or unrolled."""
  if spec.scan_layers:
    stacked = params['blocks']
    return [jax.tree_util.tree_map(lambda a, i=i: a[i], stacked)
            for i in range(spec.num_layers)]
  return [params[f'block_{i}'] for i in range(spec.num_layers)]


def _masked(conv: Params, mask_type: str, spec: NetSpec, out_blocks: int = 1
            ) -> tuple[Array, Array]:
  """(masked kernel, bias) in the compute dtype, exactly as MaskedConv2D builds them."""
  kernel = conv['kernel']
  kh, kw, fin, fout = kernel.shape
  mask = masks.conv_mask((kh, kw), fin, fout, mask_type, spec.num_channels,
                         out_blocks=out_blocks)
  return (kernel * mask).astype(spec.dtype), conv['bias'].astype(spec.dtype)


def _dense(x_NxF: Array, kernel_bias: tuple[Array, Array], dtype: Any) -> Array:
  """A 1x1 masked convolution at one position (MaskedConv2D's einsum path)."""
  kernel, bias = kernel_bias
  return jnp.einsum('nf,fo->no', x_NxF.astype(dtype), kernel[0, 0]) + bias[None, :]


def _window_conv(window_NxIxJxF: Array, kernel_IxJxFxO: Array, bias: Array) -> Array:
  """A masked convolution evaluated at one position from its (top part of the) window."""
  return jnp.einsum('nijf,ijfo->no', window_NxIxJxF, kernel_IxJxFxO) + bias[None, :]


def _lstm_at(kernel_Kx4h: Array, neighbours_NxK: Array, gates_is_Nx4h: Array,
             c_prev_Nxh: Array) -> tuple[Array, Array]:
  """One LSTM position: the single-position form of row_/diagonal_state_to_state + cell."""
  s2s = jnp.einsum('nk,kf->nf', neighbours_NxK.astype(kernel_Kx4h.dtype), kernel_Kx4h)
  return layers.lstm_cell(gates_is_Nx4h.astype(jnp.float32) + s2s, c_prev_Nxh)


def _read(cache: Array, layer: int, r: Array, c: Array, rows: int, cols: int) -> Array:
  """cache[layer, :, r:r+rows, c:c+cols] for traced r, c: [N, rows, cols, F]."""
  n, f = cache.shape[1], cache.shape[-1]
  zero = jnp.zeros((), jnp.int32)
  return jax.lax.dynamic_slice(cache, (layer, zero, r, c, zero), (1, n, rows, cols, f))[0]


def _write(cache: Array, layer: int, r: Array, c: Array, value_NxF: Array) -> Array:
  """cache[layer, :, r, c] = value, in place inside the sampling loop."""
  zero = jnp.zeros((), jnp.int32)
  update = value_NxF.astype(cache.dtype)[None, :, None, None, :]
  return jax.lax.dynamic_update_slice(cache, update, (layer, zero, r, c, zero))


def diagonal_boundary(kernel_2x2hx4h: Array, h0_2xh: Array, c0_2xh: Array, height: int
                      ) -> tuple[Array, Array]:
  """The Diagonal BiLSTM state just left of column 0 of every row, both directions.

  In the skewed scan, row r starts at skewed column r; at columns t < r it is zero-input
  padding whose state only reads padding of row r - 1 and the learned initial state, so it
  is the same for every image. Running diagonal_step on all-zero gates reproduces it: at
  step t, rows > t are still padding. Row 0 starts from the initial state itself.

  Returns:
    (h, c), each [H, 2, h]: index r is the left neighbour of (r, 0) in each direction.
  """
  hidden = h0_2xh.shape[-1]
  like = jnp.zeros((2, 1, height, hidden), jnp.float32)
  carry = (like + h0_2xh[:, None, None, :], like + c0_2xh[:, None, None, :])
  zeros = jnp.zeros((2, 1, height, 4 * hidden), jnp.float32)

  def step(carry, t):
    carry, _ = diagonal_bilstm.diagonal_step(kernel_2x2hx4h, carry, zeros)
    row = lambda a: jax.lax.dynamic_index_in_dim(a, t + 1, axis=2, keepdims=False)[:, 0]
    return carry, (row(carry[0]), row(carry[1]))

  _, (hs, cs) = jax.lax.scan(step, carry, jnp.arange(height - 1))
  h = jnp.concatenate([h0_2xh[None].astype(jnp.float32), hs], axis=0)
  c = jnp.concatenate([c0_2xh[None].astype(jnp.float32), cs], axis=0)
  return h, c


class CachedNetwork:
  """The network of `spec` evaluated one position at a time against per-layer caches.

  `init` builds the caches for a batch of starting images, `position` computes the logits
  of every channel at (r, c) and writes that position into every cache, `set_subpixel`
  records a sampled value, `end_row` finishes a row (Diagonal BiLSTM right-to-left pass).
  The caches are one dict of arrays (a pytree) carried by the sampling loops.
  """

  def __init__(self, spec: NetSpec, params: Params):
    self.spec = spec
    s, dt = spec, spec.dtype
    self.pad = s.first_kernel_size // 2
    k_in, b_in = _masked(params['input_conv'], 'A', s)
    self.input_conv = (k_in[:self.pad + 1], b_in)  # Rows below the centre are masked.
    self.head = (_masked(params['head']['hidden'], 'B', s),
                 _masked(params['head']['logits'], 'B', s))
    self.blocks = [self._prepare_block(p) for p in block_params(s, params)]
    if s.core == 'diagonal_bilstm':
      stack = lambda key: jnp.stack([b[key] for b in self.blocks])
      self.bwd_input = (stack('bwd_kernel'), stack('bwd_bias'))  # [L, 1, 1, 2h, 4h], [L, 4h]
      self.bwd_state = stack('s2s')[:, 1]  # [L, 2h, 4h]
      cores = [p['diagonal_bilstm'] for p in block_params(s, params)]
      h, c = jax.vmap(lambda k, h0, c0: diagonal_boundary(k.astype(dt), h0, c0, s.size))(
          jnp.stack([p['state_to_state'] for p in cores]),
          jnp.stack([p['initial_h'] for p in cores]),
          jnp.stack([p['initial_c'] for p in cores]))
      self.boundary_h, self.boundary_c = h, c  # [L, H, 2, h]

  def _prepare_block(self, p: Params) -> dict[str, Any]:
    """Masked, cast weights of one block, computed once per sampling call."""
    s, dt = self.spec, self.spec.dtype
    w = {'skip': _masked(p['skip'], 'B', s) if s.skip else None}
    if s.core == 'pixelcnn':
      w['reduce'] = _masked(p['reduce'], 'B', s)
      w['conv'] = _masked(p['masked_conv'], 'B', s)
      w['expand'] = _masked(p['expand'], 'B', s)
      return w
    w['output'] = _masked(p['output_conv'], 'B', s)
    core = p[s.core]
    if s.core == 'row_lstm':
      kernel, bias = _masked(core['input_to_state'], 'B', s, out_blocks=4)
      w['input'] = (kernel[0, :2], bias)  # Taps c-1 and c; the c+1 tap is masked.
      w['s2s'] = core['state_to_state'].astype(dt)
      w['h0'], w['c0'] = core['initial_h'], core['initial_c']
    else:
      w['fwd'] = _masked(core['input_to_state_fwd'], 'B', s, out_blocks=4)
      w['bwd_kernel'], w['bwd_bias'] = _masked(core['input_to_state_bwd'], 'B', s,
                                               out_blocks=4)
      w['s2s'] = core['state_to_state'].astype(dt)  # [2, 2h, 4h]: fwd, bwd.
    return w

  def init(self, images_NxHxWxC: Array) -> dict[str, Array]:
    """Caches for a batch of starting images (zeros, or a prefix for completion)."""
    s = self.spec
    n, size, h, num_l, p = images_NxHxWxC.shape[0], s.size, s.hidden, s.num_layers, self.pad
    scaled = layers.scale_input(images_NxHxWxC, s.num_levels)
    # The input convolution pads with zeros in the scaled domain; no bottom rows needed.
    cache = {'image': jnp.pad(scaled, ((0, 0), (p, 0), (p, p), (0, 0)))}
    f32 = jnp.float32
    if s.core == 'pixelcnn':
      q = s.kernel_size // 2
      cache['conv_in'] = jnp.zeros((num_l, n, size + q, size + 2 * q, h), s.dtype)
    elif s.core == 'row_lstm':
      # Row 0 is row -1 of the image: the learned initial state; columns 0 and W + 1 are
      # the zero padding of row_state_to_state.
      h0 = jnp.stack([b['h0'] for b in self.blocks]).astype(f32)[:, None, None, None, :]
      c0 = jnp.stack([b['c0'] for b in self.blocks]).astype(f32)[:, None, None, None, :]
      hmap = jnp.zeros((num_l, n, size + 1, size + 2, h), f32)
      cache['h'] = hmap.at[:, :, :1, 1:size + 1].add(h0)
      cache['c'] = jnp.zeros((num_l, n, size + 1, size, h), f32).at[:, :, :1].add(c0)
      # Layer inputs, with a zero column on the left for the c-1 tap at c = 0.
      cache['x'] = jnp.zeros((num_l, n, size, size + 1, 2 * h), s.dtype)
    else:
      # Forward h: row 0 is the zero row above row 0, column 0 the precomputed state left
      # of column 0. Forward c: column 0 likewise. Backward output: row r + 1 holds the
      # right-to-left output of row r, i.e. what row r + 1 adds (shifted down).
      left_h = self.boundary_h[:, :, 0][:, None, :, None, :]
      left_c = self.boundary_c[:, :, 0][:, None, :, None, :]
      zeros_lnh1h = jnp.zeros((num_l, n, size, 1, h), f32)
      hf = jnp.zeros((num_l, n, size + 1, size + 1, h), f32)
      cache['hf'] = hf.at[:, :, 1:, :1].set(zeros_lnh1h + left_h)
      cf = jnp.zeros((num_l, n, size, size + 1, h), f32)
      cache['cf'] = cf.at[:, :, :, :1].set(zeros_lnh1h + left_c)
      cache['hb'] = jnp.zeros((num_l, n, size + 1, size, h), f32)
      cache['x'] = jnp.zeros((num_l, n, size, size, 2 * h), s.dtype)
    return cache

  def set_subpixel(self, cache: dict[str, Array], r: Array, c: Array, ch: Array,
                   value_N: Array) -> dict[str, Array]:
    """Records sampled (or known) levels of sub-pixel (r, c, ch) in the image cache."""
    scaled = layers.scale_input(value_N, self.spec.num_levels)[:, None, None, None]
    zero = jnp.zeros((), jnp.int32)
    image = jax.lax.dynamic_update_slice(cache['image'], scaled,
                                         (zero, r + self.pad, c + self.pad, ch))
    return {**cache, 'image': image}

  def position(self, cache: dict[str, Array], r: Array, c: Array
               ) -> tuple[Array, dict[str, Array]]:
    """Logits [N, C, K] at (r, c), writing (r, c) into every layer's cache."""
    s, dt = self.spec, self.spec.dtype
    k, p = s.first_kernel_size, self.pad
    image = cache['image']
    zero = jnp.zeros((), jnp.int32)
    window = jax.lax.dynamic_slice(image, (zero, r, c, zero),
                                   (image.shape[0], p + 1, k, s.num_channels))
    x = _window_conv(window.astype(dt), *self.input_conv)
    skip_sum = None
    for i, w in enumerate(self.blocks):
      if s.core == 'pixelcnn':
        y, cache = self._pixelcnn_at(i, w, cache, x, r, c)
      elif s.core == 'row_lstm':
        y, cache = self._row_lstm_at(i, w, cache, x, r, c)
      else:
        y, cache = self._diagonal_at(i, w, cache, x, r, c)
      # The residual is added exactly once, here, as in the blocks.
      x = (x + y if s.residual else y).astype(x.dtype)
      if s.skip:
        proj = _dense(x, w['skip'], dt)
        skip_sum = proj if skip_sum is None else skip_sum + proj
    return self._head(skip_sum if s.skip else x), cache

  def _head(self, x_NxF: Array) -> Array:
    """OutputHead at one position: ReLU -> 1x1 -> ReLU -> 1x1 -> logits [N, C, K]."""
    s = self.spec
    x = jax.nn.relu(_dense(jax.nn.relu(x_NxF), self.head[0], s.dtype))
    x = _dense(x, self.head[1], s.dtype).astype(jnp.float32)
    logits = x.reshape(x.shape[0], s.num_channels, -1)
    if s.num_levels == 2:  # One Bernoulli logit l per sub-pixel -> categorical [0, l].
      logits = jnp.concatenate([jnp.zeros_like(logits), logits], axis=-1)
    return logits

  def _pixelcnn_at(self, i, w, cache, x, r, c):
    """ConvBlock at (r, c): the 3x3 input map is cached, the 1x1 layers are pointwise."""
    dt, q, ks = self.spec.dtype, self.spec.kernel_size // 2, self.spec.kernel_size
    a = jax.nn.relu(_dense(jax.nn.relu(x), w['reduce'], dt))
    conv_in = _write(cache['conv_in'], i, r + q, c + q, a)
    kernel, bias = w['conv']
    y = _window_conv(_read(conv_in, i, r, c, q + 1, ks), kernel[:q + 1], bias)
    y = _dense(jax.nn.relu(y), w['expand'], dt)
    return y, {**cache, 'conv_in': conv_in}

  def _row_lstm_at(self, i, w, cache, x, r, c):
    """RecurrentBlock(Row LSTM) at (r, c) from the previous row's state."""
    dt, hid = self.spec.dtype, self.spec.hidden
    xs = _write(cache['x'], i, r, c + 1, x)
    gates_is = _window_conv(_read(xs, i, r, c, 1, 2), w['input'][0][None], w['input'][1])
    above = _read(cache['h'], i, r, c, 1, 3).reshape(-1, 3 * hid)  # [h(c-1), h(c), h(c+1)]
    c_prev = _read(cache['c'], i, r, c, 1, 1).reshape(-1, hid)
    h_new, c_new = _lstm_at(w['s2s'], above, gates_is, c_prev)
    cache = {**cache, 'x': xs, 'h': _write(cache['h'], i, r + 1, c + 1, h_new),
             'c': _write(cache['c'], i, r + 1, c, c_new)}
    return _dense(h_new, w['output'], dt), cache

  def _diagonal_at(self, i, w, cache, x, r, c):
    """RecurrentBlock(Diagonal BiLSTM) at (r, c): forward step + cached backward output."""
    dt, hid = self.spec.dtype, self.spec.hidden
    xs = _write(cache['x'], i, r, c, x)
    gates_is = _dense(x, w['fwd'], dt)
    above = _read(cache['hf'], i, r, c + 1, 1, 1).reshape(-1, hid)
    left = _read(cache['hf'], i, r + 1, c, 1, 1).reshape(-1, hid)
    c_left = _read(cache['cf'], i, r, c, 1, 1).reshape(-1, hid)
    # diagonal_state_to_state concatenates [above, left].
    h_new, c_new = _lstm_at(w['s2s'][0], jnp.concatenate([above, left], axis=-1), gates_is,
                            c_left)
    h_bwd = _read(cache['hb'], i, r, c, 1, 1).reshape(-1, hid)
    cache = {**cache, 'x': xs, 'hf': _write(cache['hf'], i, r + 1, c + 1, h_new),
             'cf': _write(cache['cf'], i, r, c + 1, c_new)}
    return _dense(h_new + h_bwd, w['output'], dt), cache

  def end_row(self, cache: dict[str, Array], r: Array) -> dict[str, Array]:
    """After row r is complete: the right-to-left direction over row r, all layers at once.

    Row r's layer inputs are final, and combine_directions adds this output to row r + 1
    only, so it is run exactly once per row. In mirrored coordinates it is the forward
    recurrence: above = the backward state of row r - 1, left = the column to the right.
    """
    if self.spec.core != 'diagonal_bilstm':
      return cache
    s, dt = self.spec, self.spec.dtype
    x_row = jax.lax.dynamic_index_in_dim(cache['x'], r, axis=2, keepdims=False)  # [L,N,W,2h]
    kernel, bias = self.bwd_input
    gates = jnp.einsum('lnwf,lfo->lnwo', x_row.astype(dt), kernel[:, 0, 0])
    gates = jnp.flip(gates + bias[:, None, None, :], axis=2)
    above = jnp.flip(jax.lax.dynamic_index_in_dim(cache['hb'], r, axis=2, keepdims=False),
                     axis=2)
    n = x_row.shape[1]
    zeros_lnh = jnp.zeros((s.num_layers, n, s.hidden), jnp.float32)
    start_h = jax.lax.dynamic_index_in_dim(self.boundary_h, r, axis=1, keepdims=False)
    start_c = jax.lax.dynamic_index_in_dim(self.boundary_c, r, axis=1, keepdims=False)
    carry = (zeros_lnh + start_h[:, 1][:, None, :], zeros_lnh + start_c[:, 1][:, None, :])

    def step(carry, inputs):
      gates_lnx4h, above_lnh = inputs
      neighbours = jnp.concatenate([above_lnh, carry[0]], axis=-1)
      s2s = jnp.einsum('lnk,lkf->lnf', neighbours.astype(dt), self.bwd_state)
      h, c = layers.lstm_cell(gates_lnx4h.astype(jnp.float32) + s2s, carry[1])
      return (h, c), h

    _, h_WxLxNxh = jax.lax.scan(step, carry, (jnp.moveaxis(gates, 2, 0),
                                              jnp.moveaxis(above, 2, 0)))
    h_row = jnp.flip(jnp.moveaxis(h_WxLxNxh, 0, 2), axis=2)  # Back to image columns.
    hb = jax.lax.dynamic_update_slice_in_dim(cache['hb'], h_row[:, :, None], r + 1, axis=2)
    return {**cache, 'hb': hb}


__all__ = ['CachedNetwork', 'NetSpec', 'block_params', 'diagonal_boundary',
           'spec_from_model']
