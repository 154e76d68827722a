"""Multi-Scale PixelRNN (docs/design.md section 5): a small image, then the full one.

An unconditional PixelRNN models a small s x s image taken from the full n x n image; a
conditional PixelRNN models the full image given the small one. The small image goes
through an upsampling network to a c x n x n map, and for EVERY layer of the conditional
network an unmasked 1x1 convolution of that map is added to the layer's input-to-state
pre-activations (RowLSTM / DiagonalBiLSTM `cond_BxHxWxD`, cond_to_state*). The map is a
function of the small image only, so it is fully known before the full image is drawn and
needs no mask: the conditional network stays causal in the full image (tested by Jacobian).

The choices the paper leaves open, and why:
* Subsampling: 'stride', s[i, j] = x[k i, k j] with k = n / s (the top-left pixel of every
  k x k block). It keeps exact levels (binary stays binary, 8-bit stays 8-bit), so the
  small image is itself data of the same kind. Average pooling would create levels that
  the 2- or 256-way softmax cannot represent.
* Exact likelihood. Stride subsampling makes the small image a SUBSET of the full image's
  sub-pixels, so x <-> (s, x without the stride pixels) is a bijection. The conditional
  stage therefore models only the sub-pixels that are not stride pixels (the stride pixels
  are copies of s; counting them again would make the sum a bound, not an NLL):
      -log p(x) = -log p_small(s) - sum_{i not stride} log p_full(x_i | x_<i, s),
  an exact NLL of the full image, directly comparable with the single-scale models. The
  model's logits (`__call__`) hold the small network's logits at the stride positions and
  the conditional network's elsewhere, so losses.nll_per_image of them IS this joint NLL
  and training/evaluation need no special case. They are a scoring device, not a raster
  order sampler (the conditional logits see the whole small image): sampling.sample
  draws the two stages instead (`has_stages`).
* Sampling (ancestral, exact for the model above): draw s with the small network, then the
  full image with the stride sub-pixels fixed to s (sampling's prefix/prefix_mask). The
  small image of a sampled pair is therefore always the subsampled full image, and
  `sampling.sample` returns only the full images (`subsample` recovers the small ones).
* Joint training: both stages with one loss (their sum = the joint NLL above). It is exact
  for the joint likelihood, needs one optimiser and one checkpoint, and the two stages share
  no parameters, so the sum's gradient is each stage's own gradient: it trains exactly what
  two separate runs with the same batches would.
* Upsampler: `upsampler_layers` transposed convolutions (kernel 2t for stride t, 3 for
  stride 1; ReLU between) whose strides multiply to k, from the [-1, 1]-scaled small image
  to c channels, PLUS a dense (linear) map of the whole flattened small image to c channels
  added at every position. The local path aligns each full position with the small pixels
  around it; the global path is needed because the conditional network reads the map at
  1x1 and its recurrences only carry the past: without it the first full-image pixels
  could never see the bottom of the small image. With it every logit of the full image
  depends on every small-image pixel (tested). c (`cond_channels`) and the depth are config
  fields; the experiment configs use 1-2 layers (k = 2 or 4) and c = 16-64.
* s: 32 for ImageNet 64x64 (the paper), 14 for MNIST 28x28 (k = 2: stride-2 subsampling
  keeps 1-3 pixel wide strokes visible; k = 4 leaves a 7x7 image of isolated dots), 4 for
  the tiny 8x8 test config.
* The two networks are plain AutoregressiveNetworks with the same core ('row_lstm' or
  'diagonal_bilstm'); the small one has its own depth, width and residual flag, the full
  one uses config.model's. Both keep the cached samplers.
* Class-conditional (config.model.num_classes > 0): both stages take the labels; the full
  network reads the small image's map and the one-hot class side by side
  (AutoregressiveNetwork.conditioning).
"""

import dataclasses
import math
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from pixel_jax import losses
from pixel_jax.models import layers
from pixel_jax.models import network
from pixel_jax.models.network_config import NetworkConfig

# The cores a stage can use: the recurrent ones, whose layers take the conditioning map.
RECURRENT_CORES = ('row_lstm', 'diagonal_bilstm')
SUBSAMPLE_METHODS = ('stride',)


def subsample(images_BxNxNxC: Any, factor: int) -> Any:
  """The small image: every `factor`-th pixel, s[i, j] = x[factor i, factor j].

  Exact levels are kept (no averaging), so binary images stay binary.
  """
  return images_BxNxNxC[:, ::factor, ::factor]


def stride_mask(size: int, factor: int) -> np.ndarray:
  """bool [size, size]: True at the stride positions, the pixels the small image holds."""
  keep = np.arange(size) % factor == 0
  return keep[:, None] & keep[None, :]


def upsampling_strides(factor: int, num_layers: int) -> tuple[int, ...]:
  """Per-layer strides whose product is `factor`: its prime factors, one per layer where
  there are enough layers (the largest first), merged into the first layer otherwise."""
  primes, rest, p = [], factor, 2
  while rest > 1:
    while rest % p == 0:
      primes.append(p)
      rest //= p
    p += 1
  primes.sort(reverse=True)
  if len(primes) > num_layers:
    merged = math.prod(primes[: len(primes) - num_layers + 1])
    primes = [merged] + primes[len(primes) - num_layers + 1 :]
  return tuple(primes) + (1,) * (num_layers - len(primes))


class Upsampler(nn.Module):
  """Small image [B, s, s, C] (integer levels) -> conditioning map [B, n, n, c].

  Transposed convolutions (local, aligned: full pixel (k i, k j) is the small pixel (i, j))
  plus a linear map of the whole small image added at every position (global: every
  position, the first pixels included, sees every small pixel). No mask anywhere: the map
  is a function of the small image only, fully known before the full image is drawn.
  """

  features: int
  num_layers: int
  factor: int
  num_levels: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, small_BxSxSxC: jnp.ndarray) -> jnp.ndarray:
    x = layers.scale_input(small_BxSxSxC, self.num_levels)
    h = x
    strides = upsampling_strides(self.factor, self.num_layers)
    for i, t in enumerate(strides):
      k = 2 * t if t > 1 else 3
      h = nn.ConvTranspose(
        self.features, (k, k), strides=(t, t), padding='SAME', dtype=self.dtype, name=f'deconv_{i}'
      )(h)
      if i < len(strides) - 1:
        h = nn.relu(h)
    summary = nn.Dense(self.features, dtype=self.dtype, name='global')(x.reshape(x.shape[0], -1))
    return h + summary[:, None, None, :].astype(h.dtype)


class MultiScalePixelRNN(nn.Module):
  """The unconditional small-image PixelRNN, the upsampler and the conditional PixelRNN.

  Parameters live under 'small_network', 'upsampler' and 'full_network'; the two networks
  are ordinary AutoregressiveNetworks, so each stage can be applied (and sampled, cached)
  on its own with {'params': params['small_network']} or params['full_network'].

  Attributes:
    small_network: unconditional PixelRNN on s x s images.
    full_network: PixelRNN on n x n images, called with the conditioning map.
    upsampler: small image -> conditioning map [B, n, n, c].
    factor: k = n / s, the subsampling stride.
  """

  small_network: network.AutoregressiveNetwork
  full_network: network.AutoregressiveNetwork
  upsampler: Upsampler
  factor: int

  # The data attributes every sampler and check reads (those of the full image).
  @property
  def image_size(self) -> int:
    return self.full_network.image_size

  @property
  def num_classes(self) -> int:
    return self.full_network.num_classes

  @property
  def num_channels(self) -> int:
    return self.full_network.num_channels

  @property
  def num_levels(self) -> int:
    return self.full_network.num_levels

  def condition(self, small_BxSxSxC: jnp.ndarray) -> jnp.ndarray:
    """The conditioning map [B, n, n, c] of a small image (float or integer levels)."""
    return self.upsampler(small_BxSxSxC.astype(jnp.float32))

  def conditional_logits(
    self,
    images_BxNxNxC: jnp.ndarray,
    small_BxSxSxC: jnp.ndarray,
    labels_B: Optional[jnp.ndarray] = None,
  ) -> jnp.ndarray:
    """Logits [B, n, n, C, K] of the full-image stage given a small image (and a class).

    Causal in `images` (raster order, R then G then B, by the masks); sees every pixel
    of `small` at every position (through the conditioning map).
    """
    return self.full_network(images_BxNxNxC, self.condition(small_BxSxSxC), labels_B)

  def stage_logits(
    self, images_BxNxNxC: jnp.ndarray, labels_B: Optional[jnp.ndarray] = None
  ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(small-stage logits [B, s, s, C, K], full-stage logits [B, n, n, C, K]).

    The small image is derived from `images` (stride subsampling). A class-conditional
    model (num_classes > 0) conditions both stages on `labels_B`.
    """
    small = subsample(images_BxNxNxC, self.factor)
    return (
      self.small_network(small, None, labels_B),
      self.conditional_logits(images_BxNxNxC, small, labels_B),
    )

  def nll_parts(
    self, images_BxNxNxC: jnp.ndarray, labels_B: Optional[jnp.ndarray] = None
  ) -> dict[str, jnp.ndarray]:
    """Per-image NLL in nats of each stage: {'small': [B], 'conditional': [B]}.

    'conditional' sums over the sub-pixels that are not stride pixels; the two parts sum to
    the exact joint NLL (module docstring), which equals nll_per_image(self(images)).
    """
    small_logits, full_logits = self.stage_logits(images_BxNxNxC, labels_B)
    small = subsample(images_BxNxNxC, self.factor)
    free = ~stride_mask(images_BxNxNxC.shape[1], self.factor)  # [n, n]
    logp = losses.log_prob_per_subpixel(full_logits, images_BxNxNxC)
    return {
      'small': losses.nll_per_image(small_logits, small),
      'conditional': -jnp.where(free[None, :, :, None], logp, 0.0).sum(axis=(1, 2, 3)),
    }

  def __call__(
    self, images_BxNxNxC: jnp.ndarray, labels_B: Optional[jnp.ndarray] = None
  ) -> jnp.ndarray:
    """Joint logits [B, n, n, C, K]: the small stage's at the stride positions, the
    conditional stage's elsewhere, so nll_per_image of them is the exact joint NLL.

    For scoring only: they are not causal in raster order (sampling draws the stages).
    """
    layers.check_images(images_BxNxNxC, self.image_size, self.num_channels)
    small_logits, full_logits = self.stage_logits(images_BxNxNxC, labels_B)
    return full_logits.at[:, :: self.factor, :: self.factor].set(small_logits)


def stage_variables(variables: Any) -> tuple[Any, Any]:
  """(small network's, full network's) variables, each applicable (and sampled) on its
  own with model.small_network / model.full_network."""
  params = variables['params']
  return {'params': params['small_network']}, {'params': params['full_network']}


def has_stages(model: Any) -> bool:
  """Whether `model` is drawn and scored in stages (small image, then full image): the one
  place that asks. Sampling dispatches to two-stage sampling, evaluation reports each
  stage's NLL (`nll_parts`), the sample CLI draws the (small | full) grid."""
  return isinstance(model, MultiScalePixelRNN)


def get_multiscale_model(config: ml_collections.ConfigDict) -> MultiScalePixelRNN:
  """The MultiScalePixelRNN of config.model (name 'multiscale') and config.data."""
  ms = config.model.multiscale
  full = dataclasses.replace(NetworkConfig.from_config(config), core=ms.core)
  small = dataclasses.replace(
    full,
    num_layers=ms.small_num_layers,
    image_size=ms.small_size,
    hidden_channels=ms.small_hidden_channels,
    residual=ms.small_residual,
  )
  factor = config.data.image_size // ms.small_size
  upsampler = Upsampler(
    ms.cond_channels, ms.upsampler_layers, factor, config.data.num_levels, dtype=full.dtype
  )
  return MultiScalePixelRNN(
    small_network=network.AutoregressiveNetwork(small),
    full_network=network.AutoregressiveNetwork(full),
    upsampler=upsampler,
    factor=factor,
  )


__all__ = [
  'MultiScalePixelRNN',
  'RECURRENT_CORES',
  'SUBSAMPLE_METHODS',
  'Upsampler',
  'get_multiscale_model',
  'has_stages',
  'stage_variables',
  'stride_mask',
  'subsample',
  'upsampling_strides',
]
