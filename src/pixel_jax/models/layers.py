"""Building blocks shared by every network: masked convolution, LSTM cell, output head, and
the conditioning hook (ConditionBias).

Users import them (with the cores) from the public module pixel_jax.layers.
"""

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pixel_jax.models import masks

Dtype = Any

# The variable collection of masked, cast kernels computed once ahead of a loop (see
# MaskedConv2D.masked_kernel); never part of a model's saved variables.
PREPARED = 'prepared'


class MaskedConv2D(nn.Module):
  """A 2-D convolution whose kernel is multiplied by a causal mask (see masks.conv_mask).

  Attributes:
    features: output channels.
    kernel_size: (kh, kw), any sizes (centre tap at ((kh - 1) // 2, (kw - 1) // 2)).
    mask_type: 'A' (first layer) or 'B' (all later layers).
    num_groups: colour groups (number of image channels).
    in_blocks / out_blocks: stacked, equally grouped channel blocks (4 for fused gates).
    dtype: compute dtype; parameters stay float32.
    conv_op: compute the full map with one XLA convolution over the kernel rows the mask
      reaches (the centre row and those above) instead of im2col. On XLA:CPU that is
      faster for a layer run once per step, and several times slower inside a loop (a
      layer under nn.scan), where im2col (the default) stays fast. Same parameters and
      outputs (to float32 rounding) either way.
  """

  features: int
  kernel_size: tuple[int, int] = (1, 1)
  mask_type: str = 'B'
  num_groups: int = 1
  in_blocks: int = 1
  out_blocks: int = 1
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()
  conv_op: bool = False

  @nn.compact
  def masked_kernel(self, in_features: int) -> tuple[jnp.ndarray, Optional[jnp.ndarray]]:
    """(kernel * mask [kh, kw, in, out], bias [out] or None), both in the compute dtype.

    The one place the parameters are read: the full-map form (`__call__`) and the
    one-position form (`at_window`) both start from it.

    Prepared kernels: a loop that applies the layer at every step (the cached sampler)
    would otherwise mask and cast the kernel at every step, which costs about as much as
    the step's own matrix product at small widths. Applied with the PREPARED collection
    mutable, the layer stores what it returns there; applied with that collection given,
    it returns the stored arrays and reads no parameter.
    """
    if self.has_variable(PREPARED, 'kernel'):
      bias = self.get_variable(PREPARED, 'bias') if self.use_bias else None
      return self.get_variable(PREPARED, 'kernel'), bias
    kh, kw = self.kernel_size
    mask = self.mask(in_features)
    kernel = self.param('kernel', self.kernel_init, (kh, kw, in_features, self.features))
    kernel = (kernel * mask).astype(self.dtype)
    bias = None
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (self.features,)).astype(self.dtype)
    if self.is_mutable_collection(PREPARED) and not self.is_initializing():
      self.put_variable(PREPARED, 'kernel', kernel)
      if bias is not None:
        self.put_variable(PREPARED, 'bias', bias)
    return kernel, bias

  def mask(self, in_features: int) -> np.ndarray:
    """The 0/1 causal mask [kh, kw, in, out] (masks.conv_mask)."""
    return masks.conv_mask(
      self.kernel_size,
      in_features,
      self.features,
      self.mask_type,
      self.num_groups,
      self.in_blocks,
      self.out_blocks,
    )

  def __call__(self, x_BxHxWxF: jnp.ndarray) -> jnp.ndarray:
    """The convolution over a whole map [B, H, W, F]; a 1x1 kernel takes any [..., F]."""
    in_features = x_BxHxWxF.shape[-1]
    kh, kw = self.kernel_size
    mask = self.mask(in_features)
    kernel, bias = self.masked_kernel(in_features)
    # Only the taps the mask allows are computed: each is a shifted view of the input,
    # concatenated along channels (im2col) and contracted in one matrix product. This skips
    # the masked half of every kernel and, unlike a convolution op, stays fast inside
    # scans on every backend. With conv_op, one convolution over the kernel's rows down to
    # the centre row (the rows below are all masked).
    taps = [(i, j) for i in range(kh) for j in range(kw) if mask[i, j].any()]
    if not taps:
      raise ValueError(
        f'A {kh}x{kw} mask-{self.mask_type} kernel with {self.num_groups} '
        'colour group(s) reads nothing; use a larger kernel or mask B.'
      )
    x = x_BxHxWxF.astype(self.dtype)
    a, b = (kh - 1) // 2, (kw - 1) // 2
    if self.conv_op and taps != [(a, b)]:
      rows = taps[-1][0] + 1  # No tap below the centre row is unmasked.
      y = jax.lax.conv_general_dilated(
        x,
        kernel[:rows],
        window_strides=(1, 1),
        padding=((a, rows - 1 - a), (b, kw - 1 - b)),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      )
    else:
      kernel_TFxO = jnp.concatenate([kernel[i, j] for i, j in taps], axis=0)
      if taps != [(a, b)]:
        _, h, w, _ = x.shape
        x = jnp.pad(x, ((0, 0), (a, kh - 1 - a), (b, kw - 1 - b), (0, 0)))
        x = jnp.concatenate([x[:, i : i + h, j : j + w] for i, j in taps], axis=-1)
      y = jnp.einsum('...f,fo->...o', x, kernel_TFxO)
    return y if bias is None else y + bias.reshape((1,) * (y.ndim - 1) + (-1,))

  def at_window(self, window_NxIxJxF: jnp.ndarray) -> jnp.ndarray:
    """The convolution's output [N, out] at ONE position from the top-left part of its
    receptive window: window[:, i, j] is the input at (r - a + i, c - b + j), a, b the
    centre tap. The taps left out (rows below i = I - 1, and right of j = J - 1 in the last
    row) must be masked; the sampler never holds those (future) inputs.
    """
    _, rows, cols, in_features = window_NxIxJxF.shape
    mask = self.mask(in_features)
    if mask[rows:].any() or mask[rows - 1, cols:].any():
      raise ValueError(
        f'A {rows}x{cols} window leaves out taps of the {self.kernel_size} '
        f'mask-{self.mask_type} kernel that are not masked.'
      )
    kernel_KxO, bias = self.window_kernel(rows, cols, in_features)
    y = window_NxIxJxF.reshape(window_NxIxJxF.shape[0], -1).astype(self.dtype) @ kernel_KxO
    return y if bias is None else y + bias[None, :]

  def window_kernel(
    self, rows: int, cols: int, in_features: int
  ) -> tuple[jnp.ndarray, Optional[jnp.ndarray]]:
    """(the masked kernel's top-left rows x cols taps as one matrix [rows * cols * in, out],
    bias): what `at_window` multiplies its flattened window with.

    Prepared like `masked_kernel` (under its own name per window shape): a loop applying
    `at_window` would otherwise slice, and lay out for the product, the kernel at every
    step.
    """
    name = f'window_kernel_{rows}x{cols}'
    if self.has_variable(PREPARED, name):
      bias = self.get_variable(PREPARED, 'bias') if self.use_bias else None
      return self.get_variable(PREPARED, name), bias
    kernel, bias = self.masked_kernel(in_features)
    kernel_KxO = kernel[:rows, :cols].reshape(-1, self.features)
    if self.is_mutable_collection(PREPARED) and not self.is_initializing():
      self.put_variable(PREPARED, name, kernel_KxO)
    return kernel_KxO, bias


class ConditionBias(nn.Module):
  """The conditioning hook of every core: pre-activation + a learned projection of `cond`.

  `cond` [..., D] is known before the image (a class as a one-hot vector broadcast over the
  positions, the Multi-Scale PixelRNN's map of the small image, or both concatenated), so
  adding a function of it at a position adds no dependence on any pixel: causality is
  unchanged. With a one-hot class this is a learned per-layer, per-class bias. A core makes
  itself conditional by passing each gate pre-activation through one of these, in its
  full-image and one-position forms alike (cond None: the pre-activation unchanged, no
  parameters). Parameters: 'kernel' [D, features] and 'bias', as nn.Dense.
  """

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, pre_activation: jnp.ndarray, cond: Optional[jnp.ndarray]) -> jnp.ndarray:
    if cond is None:
      return pre_activation
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (cond.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    projection = jnp.matmul(cond.astype(self.dtype), kernel.astype(self.dtype))
    bias = bias.astype(self.dtype).reshape((1,) * (projection.ndim - 1) + (-1,))
    return pre_activation + (projection + bias).astype(pre_activation.dtype)


def lstm_cell(gates_Nx4h: jnp.ndarray, c_prev_Nxh: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The LSTM update from summed pre-activations [o, f, i, g].

  o, f, i use a sigmoid and the content g a tanh; computed in float32 for stability.
  Returns (h, c).
  """
  o, f, i, g = jnp.split(gates_Nx4h.astype(jnp.float32), 4, axis=-1)
  c = jax.nn.sigmoid(f) * c_prev_Nxh + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return h, c


def lstm_step(
  kernel_Kx4h: jnp.ndarray,
  neighbours_NxK: jnp.ndarray,
  gates_is_Nx4h: jnp.ndarray,
  c_prev_Nxh: jnp.ndarray,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """One LSTM update from the states it reads: (h, c) = cell(input-to-state gates +
  neighbours @ state-to-state kernel).

  The single arithmetic of both recurrent cores, over a whole row or column or at one
  position (N is any leading shape; the kernel broadcasts as in jnp.matmul).
  """
  s2s = jnp.matmul(neighbours_NxK.astype(kernel_Kx4h.dtype), kernel_Kx4h)
  return lstm_cell(gates_is_Nx4h.astype(jnp.float32) + s2s, c_prev_Nxh)


def recomputed_in_backward(step: Callable) -> Callable:
  """A scan body whose intermediate values the backward pass recomputes from the step's
  inputs instead of storing them for every step (jax.checkpoint).

  Plain autodiff of an LSTM scan stores about a dozen [N, h]-sized intermediates of the
  cell (and the neighbours it read) per step. The layer wavefront's steps carry every
  layer at once, and there recomputing one step from its carry costs a few kernels and
  saves most of the step's buffers (146 -> 43 MB at MNIST size); the layer-by-layer scans
  store instead, which is faster on an idle CPU (docs/design.md). Forward-mode autodiff is
  unaffected. prevent_cse=False: inside a scan the recomputation cannot be merged away, so
  the guard is not needed.
  """
  return jax.checkpoint(step, prevent_cse=False)


def initial_state(
  h0_Dxh: jnp.ndarray, c0_Dxh: jnp.ndarray, like_Nxh: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The learned initial (h, c), one vector per hidden unit (and per leading parameter
  axis, e.g. the Diagonal BiLSTM's two directions), broadcast to `like_Nxh`'s shape.

  The carry is built from the input (zeros_like), not from a constant shape, so the scan
  works under explicit meshes and shard_map.
  """
  zeros = jnp.zeros_like(like_Nxh, dtype=jnp.float32)
  lead = h0_Dxh.ndim - 1
  expand = (slice(None),) * lead + (None,) * (like_Nxh.ndim - lead - 1)
  return zeros + h0_Dxh[expand], zeros + c0_Dxh[expand]


class OutputHead(nn.Module):
  """ReLU -> 1x1 mask B -> ReLU -> 1x1 mask B to the logits (docs/design.md section 5).

  `hidden_layers` ReLU -> 1x1 mask-B layers of `hidden_channels` features (named 'hidden',
  then 'hidden_1', 'hidden_2', ...), then ReLU -> 1x1 mask B to the logits. The paper's
  "ReLU followed by 1x1 conv, mask B (2 layers)" is read as one hidden layer (the default;
  configs.py says why). Pointwise, so the same module serves a whole map [B, H, W, F] and
  one position [N, F] (the cached sampler).

  Returns float32 logits [B, H, W, C, num_levels]. For binary data (num_levels == 2) the
  last layer emits one Bernoulli logit l per sub-pixel and the categorical logits are
  [0, l], so log_softmax gives exactly log sigmoid(-l), log sigmoid(l).
  """

  num_channels: int
  num_levels: int
  hidden_channels: int
  hidden_layers: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxF: jnp.ndarray) -> jnp.ndarray:
    k_out = 1 if self.num_levels == 2 else self.num_levels
    x = x_BxHxWxF
    for i in range(self.hidden_layers):
      x = MaskedConv2D(
        self.hidden_channels,
        num_groups=self.num_channels,
        dtype=self.dtype,
        name='hidden' if i == 0 else f'hidden_{i}',
      )(nn.relu(x))
    x = nn.relu(x)
    x = MaskedConv2D(
      self.num_channels * k_out, num_groups=self.num_channels, dtype=self.dtype, name='logits'
    )(x)
    logits = x.astype(jnp.float32).reshape(*x.shape[:-1], self.num_channels, k_out)
    if self.num_levels == 2:
      logits = jnp.concatenate([jnp.zeros_like(logits), logits], axis=-1)
    return logits


def scale_input(images_BxHxWxC: jnp.ndarray, num_levels: int) -> jnp.ndarray:
  """Maps integer levels {0..K-1} affinely onto [-1, 1] (docs/design.md section 5: our choice).

  The sampler feeds its partial images through this same function, so training and
  sampling see identical inputs.
  """
  return images_BxHxWxC.astype(jnp.float32) * (2.0 / (num_levels - 1)) - 1.0


def check_images(images: jnp.ndarray, image_size: int, num_channels: int) -> None:
  """Raises one clear error when `images` do not match the model's configuration."""
  if images.ndim != 4:
    raise ValueError(f'Expected images [B, H, W, C], got shape {tuple(images.shape)}.')
  _, h, w, c = images.shape
  if (h, w) != (image_size, image_size):
    raise ValueError(f'Images are {h}x{w} but config.data.image_size is {image_size}.')
  if c != num_channels:
    raise ValueError(f'Images have {c} channels but config.data.num_channels is {num_channels}.')
