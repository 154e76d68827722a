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
  right tap is masked). So the cache is the previous row's (h, c) (the learned initial
  state for row -1), the current row's (h, c) being written, and the left neighbour's
  layer input: one position per step.
* Diagonal BiLSTM, left-to-right direction: the state at (r, c) reads h above (r-1, c) and
  (h, c) to the left (r, c-1); left of column 0 it is the learned initial state (the model
  holds the skewed padding there). Right-to-left direction: its output at (r, c) only
  enters row r + 1 (combine_directions), so once row r is finished it is run over that
  row, for every layer at once: W sequential steps per row, one position each.

Buffers read during a row are never the buffers written during it: a buffer read and then
updated in place within one loop step makes XLA copy it whole every step, which costs the
whole image again (measured: per-position time growing with H * W).

Conditioning (Multi-Scale PixelRNN): a map [N, H, W, D] known before sampling starts; each
LSTM layer adds its 1x1 projection (cond_to_state*) to the input-to-state pre-activations,
computed at the one position a step visits (or over the finished row for the right-to-left
direction). It is a per-position constant, so no cache changes.

Colour: a pixel is visited once per channel; each visit recomputes the position with the
sub-pixels sampled so far. By the masks, the features at (r, c) never depend on the last
channel of (r, c), so after the last visit every cache holds exactly the naive features.

Every function mirrors the casts of the Flax modules (MaskedConv2D casts inputs and masked
kernels to the compute dtype; the LSTM cell runs in float32), so both samplers compute the
same numbers up to the summation order of the convolutions.
"""

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp

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


def _read(buffer_LxNxWxF: Array, layer: int, c: Array, cols: int) -> Array:
  """buffer[layer, :, c:c+cols] for a traced column c: [N, cols, F]."""
  n, f = buffer_LxNxWxF.shape[1], buffer_LxNxWxF.shape[-1]
  zero = jnp.zeros((), jnp.int32)
  return jax.lax.dynamic_slice(buffer_LxNxWxF, (layer, zero, c, zero), (1, n, cols, f))[0]


def _write(buffer_LxNxWxF: Array, layer: int, c: Array, value_NxF: Array) -> Array:
  """buffer[layer, :, c] = value, in place inside the sampling loop."""
  zero = jnp.zeros((), jnp.int32)
  update = value_NxF.astype(buffer_LxNxWxF.dtype)[None, :, None, :]
  return jax.lax.dynamic_update_slice(buffer_LxNxWxF, update, (layer, zero, c, zero))


class CachedNetwork:
  """The network of `spec` evaluated one position at a time against per-layer caches.

  `init` builds the caches for a batch of starting images, `position` computes the logits
  of every channel at (r, c) and writes that position into every cache, `set_subpixel`
  records a sampled value, `end_row` finishes a row (Diagonal BiLSTM right-to-left pass).
  The caches are one dict of arrays (a pytree) carried by the sampling loops.
  """

  def __init__(self, spec: NetSpec, params: Params, cond_NxHxWxD: Optional[Array] = None):
    self.spec = spec
    s, dt = spec, spec.dtype
    # The conditioning map, or None; the layers' projections of it are in self.blocks.
    self.cond = None if cond_NxHxWxD is None else cond_NxHxWxD.astype(dt)
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
      if self.cond is not None:  # [L, D, 4h], [L, 4h]
        self.cond_bwd = tuple(jnp.stack([b['cond_bwd'][j] for b in self.blocks])
                              for j in (0, 1))
      # Skewed cells left of the image are held at the learned initial state, so every
      # row, in both directions, starts from it (models/diagonal_bilstm.py).
      cores = [p['diagonal_bilstm'] for p in block_params(s, params)]
      self.initial_h = jnp.stack([p['initial_h'] for p in cores]).astype(jnp.float32)
      self.initial_c = jnp.stack([p['initial_c'] for p in cores]).astype(jnp.float32)

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
    if self.cond is not None:  # nn.Dense's parameters, in the compute dtype.
      dense = lambda name: (core[name]['kernel'].astype(dt), core[name]['bias'].astype(dt))
      names = (('cond', 'cond_to_state'),) if s.core == 'row_lstm' else (
          ('cond', 'cond_to_state_fwd'), ('cond_bwd', 'cond_to_state_bwd'))
      w.update({key: dense(name) for key, name in names})
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
    """Caches for a batch of starting images (zeros, or a prefix for completion).

    Buffers that are read during a row (the previous row's states) are never the buffers
    written during it (the current row's), and states of the left neighbour travel as
    small arrays: a buffer read and then updated in place in one step makes XLA copy it
    whole every step, which would cost the whole image again.
    """
    s = self.spec
    n, size, h, num_l, p = images_NxHxWxC.shape[0], s.size, s.hidden, s.num_layers, self.pad
    scaled = layers.scale_input(images_NxHxWxC, s.num_levels)
    # The input convolution pads with zeros in the scaled domain; no bottom rows needed.
    cache = {'image': jnp.pad(scaled, ((0, 0), (p, 0), (p, p), (0, 0)))}
    f32 = jnp.float32
    zeros_lnh = jnp.zeros((num_l, n, h), f32)
    if s.core == 'pixelcnn':
      # The input map of each spatial convolution, zero-padded; written at (r, c) and then
      # read, so it is one buffer.
      q = s.kernel_size // 2
      cache['conv_in'] = jnp.zeros((num_l, n, size + q, size + 2 * q, h), s.dtype)
    elif s.core == 'row_lstm':
      # Row -1 is the learned initial state; columns 0 and W + 1 are the zero padding of
      # row_state_to_state.
      h0 = jnp.stack([b['h0'] for b in self.blocks]).astype(f32)[:, None, None, :]
      c0 = jnp.stack([b['c0'] for b in self.blocks]).astype(f32)[:, None, None, :]
      h_row = jnp.zeros((num_l, n, size + 2, h), f32)
      cache['h_above'] = h_row.at[:, :, 1:size + 1].add(h0)
      cache['c_above'] = jnp.zeros((num_l, n, size, h), f32) + c0
      cache['h_row'], cache['c_row'] = h_row, jnp.zeros((num_l, n, size, h), f32)
      # The layer input at (r, c - 1), read by the 1x3 input-to-state kernel.
      cache['x_left'] = jnp.zeros((num_l, n, 2 * h), s.dtype)
    else:
      # Forward states of the row above (zero above row 0) and of the current row; the
      # left neighbour's (h, c) starts as the learned initial state. The
      # right-to-left output of the row above is what the current row adds.
      cache['hf_above'] = jnp.zeros((num_l, n, size, h), f32)
      cache['hf_row'] = jnp.zeros((num_l, n, size, h), f32)
      cache['h_left'] = zeros_lnh + self.initial_h[:, 0][:, None, :]
      cache['c_left'] = zeros_lnh + self.initial_c[:, 0][:, None, :]
      cache['hb_above'] = jnp.zeros((num_l, n, size, h), f32)
      cache['x_row'] = jnp.zeros((num_l, n, size, 2 * h), s.dtype)
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
               ) -> tuple[Array, dict[str, Array], dict[str, Array]]:
    """Logits [N, C, K] at (r, c), the updated caches, and the pending left-neighbour state.

    The pending state (per layer, stacked) becomes the left neighbour once the pixel's
    last channel is drawn (`end_pixel`); earlier visits of the pixel must not see it.
    """
    s, dt = self.spec, self.spec.dtype
    k, p = s.first_kernel_size, self.pad
    image = cache['image']
    zero = jnp.zeros((), jnp.int32)
    window = jax.lax.dynamic_slice(image, (zero, r, c, zero),
                                   (image.shape[0], p + 1, k, s.num_channels))
    x = _window_conv(window.astype(dt), *self.input_conv)
    skip_sum, pending = None, []
    for i, w in enumerate(self.blocks):
      if s.core == 'pixelcnn':
        y, cache, state = self._pixelcnn_at(i, w, cache, x, r, c)
      elif s.core == 'row_lstm':
        y, cache, state = self._row_lstm_at(i, w, cache, x, r, c)
      else:
        y, cache, state = self._diagonal_at(i, w, cache, x, r, c)
      pending.append(state)
      # The residual is added exactly once, here, as in the blocks.
      x = (x + y if s.residual else y).astype(x.dtype)
      if s.skip:
        proj = _dense(x, w['skip'], dt)
        skip_sum = proj if skip_sum is None else skip_sum + proj
    pending = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *pending)
    return self._head(skip_sum if s.skip else x), cache, pending

  def end_pixel(self, cache: dict[str, Array], pending: dict[str, Array]
                ) -> dict[str, Array]:
    """The finished pixel becomes the left neighbour of the next one."""
    return {**cache, **pending}

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
    zero = jnp.zeros((), jnp.int32)
    conv_in = jax.lax.dynamic_update_slice(cache['conv_in'], a[None, :, None, None, :],
                                           (i, zero, r + q, c + q, zero))
    n, h = a.shape
    window = jax.lax.dynamic_slice(conv_in, (i, zero, r, c, zero), (1, n, q + 1, ks, h))[0]
    kernel, bias = w['conv']
    y = _window_conv(window, kernel[:q + 1], bias)
    y = _dense(jax.nn.relu(y), w['expand'], dt)
    return y, {**cache, 'conv_in': conv_in}, {}

  def _cond_at(self, w, r, c):
    """The layer's projection of the conditioning map at (r, c) (nn.Dense at one position),
    added to the input-to-state pre-activations."""
    kernel, bias = w['cond']
    return jnp.einsum('nd,do->no', self.cond[:, r, c], kernel) + bias[None, :]

  def _row_lstm_at(self, i, w, cache, x, r, c):
    """RecurrentBlock(Row LSTM) at (r, c) from the previous row's state."""
    dt, hid = self.spec.dtype, self.spec.hidden
    x_left = cache['x_left'][i]
    taps = jnp.stack([x_left, x.astype(x_left.dtype)], axis=1)  # [N, 2, 2h]: c-1, c.
    gates_is = _window_conv(taps[:, None], w['input'][0][None], w['input'][1])
    if self.cond is not None:
      gates_is = gates_is + self._cond_at(w, r, c)
    # row_state_to_state's neighbours [h(c-1), h(c), h(c+1)] of the row above.
    above = _read(cache['h_above'], i, c, 3).reshape(-1, 3 * hid)
    c_prev = _read(cache['c_above'], i, c, 1)[:, 0]
    h_new, c_new = _lstm_at(w['s2s'], above, gates_is, c_prev)
    cache = {**cache, 'h_row': _write(cache['h_row'], i, c + 1, h_new),
             'c_row': _write(cache['c_row'], i, c, c_new)}
    return _dense(h_new, w['output'], dt), cache, {'x_left': x.astype(x_left.dtype)}

  def _diagonal_at(self, i, w, cache, x, r, c):
    """RecurrentBlock(Diagonal BiLSTM) at (r, c): forward step + cached backward output."""
    dt = self.spec.dtype
    gates_is = _dense(x, w['fwd'], dt)
    if self.cond is not None:
      gates_is = gates_is + self._cond_at(w, r, c)
    above = _read(cache['hf_above'], i, c, 1)[:, 0]
    # diagonal_state_to_state concatenates [above, left].
    neighbours = jnp.concatenate([above, cache['h_left'][i]], axis=-1)
    h_new, c_new = _lstm_at(w['s2s'][0], neighbours, gates_is, cache['c_left'][i])
    h_bwd = _read(cache['hb_above'], i, c, 1)[:, 0]
    cache = {**cache, 'hf_row': _write(cache['hf_row'], i, c, h_new),
             'x_row': _write(cache['x_row'], i, c, x)}
    return (_dense(h_new + h_bwd, w['output'], dt), cache,
            {'h_left': h_new, 'c_left': c_new})

  def end_row(self, cache: dict[str, Array], r: Array) -> dict[str, Array]:
    """After row r is complete: the current row becomes the row above.

    Diagonal BiLSTM: the right-to-left direction is run over row r, for every layer at
    once. Row r's layer inputs are final, and combine_directions adds this output to row
    r + 1 only, so it runs exactly once per row. In mirrored coordinates it is the forward
    recurrence: above = the backward state of row r - 1, left = the column to the right.
    """
    s, dt = self.spec, self.spec.dtype
    if s.core == 'pixelcnn':
      return cache
    if s.core == 'row_lstm':
      return {**cache, 'h_above': cache['h_row'], 'c_above': cache['c_row'],
              'x_left': jnp.zeros_like(cache['x_left'])}
    kernel, bias = self.bwd_input
    gates = jnp.einsum('lnwf,lfo->lnwo', cache['x_row'].astype(dt), kernel[:, 0, 0])
    gates = gates + bias[:, None, None, :]
    if self.cond is not None:  # Row r of the map through each layer's backward projection.
      cond_row = jax.lax.dynamic_index_in_dim(self.cond, r, axis=1, keepdims=False)
      k_cond, b_cond = self.cond_bwd
      gates = gates + (jnp.einsum('nwd,ldo->lnwo', cond_row, k_cond)
                       + b_cond[:, None, None, :])
    gates = jnp.flip(gates, axis=2)
    above = jnp.flip(cache['hb_above'], axis=2)
    zeros_lnh = jnp.zeros_like(cache['h_left'])
    carry = (zeros_lnh + self.initial_h[:, 1][:, None, :],
             zeros_lnh + self.initial_c[:, 1][:, None, :])

    def step(carry, inputs):
      gates_lnx4h, above_lnh = inputs
      neighbours = jnp.concatenate([above_lnh, carry[0]], axis=-1)
      s2s = jnp.einsum('lnk,lkf->lnf', neighbours.astype(dt), self.bwd_state)
      h, c = layers.lstm_cell(gates_lnx4h.astype(jnp.float32) + s2s, carry[1])
      return (h, c), h

    _, h_WxLxNxh = jax.lax.scan(step, carry, (jnp.moveaxis(gates, 2, 0),
                                              jnp.moveaxis(above, 2, 0)))
    # The next row's forward direction starts from the initial state again.
    return {**cache, 'hb_above': jnp.flip(jnp.moveaxis(h_WxLxNxh, 0, 2), axis=2),
            'hf_above': cache['hf_row'], 'hf_row': cache['hf_above'],
            'h_left': zeros_lnh + self.initial_h[:, 0][:, None, :],
            'c_left': zeros_lnh + self.initial_c[:, 0][:, None, :]}


__all__ = ['CachedNetwork', 'NetSpec', 'block_params', 'spec_from_model']
