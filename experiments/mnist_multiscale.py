"""Multi-Scale PixelRNN on binarized MNIST: a 14x14 small image, then the 28x28 digit.

  python -m pixel_jax.main --config=experiments/mnist_multiscale.py --workdir=/tmp/ms1 \
      --config.data.idx_dir=/path/to/mnist   # test split: the real MNIST test set
  python -m pixel_jax.evaluate --workdir=/tmp/ms1      # test NLL with each stage's share
  python -m pixel_jax.sample --workdir=/tmp/ms1 --scale=3   # sampled/stages.png: small | full

Row LSTM cores: a 4-layer unconditional network on the 14x14 image (every 2nd pixel of the
binarized digit), a 7-layer conditional network on the full image, both with residual and
skip connections (configs.mnist_config; docs/design.md section 5; models/multiscale.py
explains s, c, the upsampler and the exact joint NLL). No paper number for MNIST (the
paper's single-scale Row LSTM: 80.54 nats). The reported
NLL is the exact joint NLL of the 28x28 image in nats; eval_nll_nats_small and
eval_nll_nats_conditional are the stages' shares. Default: 500 steps of batch 16, offline
on the bundled digits; the measured runs are in docs/results.md, section 1.
"""

from pixel_jax import configs


def get_config():
  config = configs.mnist_config('multiscale')
  # The conditional (full 28x28) network.
  config.model.num_layers = 7
  config.model.hidden_channels = 16
  ms = config.model.multiscale
  ms.core = 'row_lstm'  # The fastest core on CPU; 'diagonal_bilstm' works the same way.
  ms.small_size = 14  # Stride 2: strokes (1-3 pixels wide) stay visible; 7 leaves dots.
  ms.subsample = 'stride'
  ms.cond_channels = 16
  ms.upsampler_layers = 2  # Strides (2, 1): a 4x4 transposed convolution, then a 3x3 one.
  ms.small_num_layers = 4  # The 14x14 image holds a quarter of the pixels.
  ms.small_hidden_channels = 16
  ms.small_residual = True
  # Every layer in one scan of H + L - 1 rows (models/wavefront.py); docs/results.md times it.
  config.model.wavefront = False
  return config
