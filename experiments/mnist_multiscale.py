"""Multi-Scale PixelRNN on binarized MNIST: a 14x14 small image, then the 28x28 digit.

  python -m pixel_jax.main --config=experiments/mnist_multiscale.py --workdir=/tmp/ms1 \
      --config.data.idx_dir=/work/shared/data/mnist   # test split: the real MNIST test set
  python -m pixel_jax.evaluate --workdir=/tmp/ms1      # test NLL with each stage's share
  python -m pixel_jax.sample --workdir=/tmp/ms1 --scale=3   # sampled/stages.png: small | full

Row LSTM cores: a 4-layer unconditional network on the 14x14 image (every 2nd pixel of the
binarized digit), a 7-layer conditional network on the full image (SPEC.md section 5;
models/multiscale.py explains s, c, the upsampler and the exact joint NLL). No paper number
for MNIST (the paper's single-scale Row LSTM: 80.54 nats, SPEC.md section 6). The reported
NLL is the exact joint NLL of the 28x28 image in nats; eval_nll_nats_small and
eval_nll_nats_conditional are the stages' shares.

Measured (the default 500 steps of batch 16, offline: the 4,500 bundled digits, static
Bernoulli(x/255) binarization, seed 0; a 2-core CPU shared with other jobs): 5.2 min wall,
validation 98.35 nats, real MNIST test set (10,000 images, same binarization) 96.64 nats
= 38.69 small stage + 57.95 conditional stage. For scale: the single-scale mnist_rowlstm
(7 x 16) reaches 96.84 validation nats after the same 500 steps.
"""

from pixel_jax import configs


def get_config():
  # data.name: the TFDS catalog binarized_mnist (the standard fixed stochastic binarization).
  # Offline, allow_fallback=True uses the bundled real digits (4,500 train / 500 validation)
  # with a static Bernoulli(x/255) binarization and says so loudly; their 'test' split is the
  # real MNIST test set read from data.idx_dir (--config.data.idx_dir=/path/to/mnist).
  config = configs.base_config()
  config.data.name = 'binarized_mnist'
  config.data.allow_fallback = True
  config.data.binarization = 'static'
  config.model.name = 'multiscale'
  # The conditional (full 28x28) network.
  config.model.num_layers = 7
  config.model.hidden_channels = 16
  config.model.out_hidden_channels = 32  # The paper's MNIST output width.
  # XLA:CPU runs the convolutions inside nn.scan's while loop 5-30x slower than unrolled.
  config.model.scan_layers = False
  ms = config.model.multiscale
  ms.core = 'row_lstm'  # The fastest core on CPU; 'diagonal_bilstm' works the same way.
  ms.small_size = 14  # Stride 2: strokes (1-3 pixels wide) stay visible; 7 leaves dots.
  ms.subsample = 'stride'
  ms.cond_channels = 16
  ms.upsampler_layers = 2  # Strides (2, 1): a 4x4 transposed convolution, then a 3x3 one.
  ms.small_num_layers = 4  # The 14x14 image holds a quarter of the pixels.
  ms.small_hidden_channels = 16
  ms.small_residual = True
  config.optim.name = 'rmsprop'  # The paper's optimiser.
  config.optim.learning_rate = 1e-3
  config.optim.grad_clip_norm = 1.0
  config.train.batch_size = 16
  # A CPU demo; paper-level training needs ~100k+ steps: --config.train.num_steps=200000.
  config.train.num_steps = 500
  config.train.log_every = 25
  config.train.eval_every = 250
  config.train.checkpoint_every = 100
  config.train.sample_every = 500
  config.eval.batch_size = 100
  config.sample.num_samples = 16
  return config
