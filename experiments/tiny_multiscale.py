"""A tiny Multi-Scale PixelRNN on 8x8 binarized bundled MNIST digits: for tests and smoke runs.

  python -m pixel_jax.main --config=experiments/tiny_multiscale.py --workdir=/tmp/tiny_ms

A 4x4 small image (every 2nd pixel) with an unconditional Row LSTM, then the 8x8 image with a
conditional Row LSTM. Runs offline in well under a minute on one CPU core (most of it
compilation). No paper number: the digits are area-downsampled to 8x8 before binarization.
"""

from pixel_jax import configs


def get_config():
  config = configs.base_config()
  config.data.name = 'mnist_bundled'
  config.data.image_size = 8  # 28x28 digits box-downsampled to 8x8.
  config.model.name = 'multiscale'
  # The conditional (full-image) network.
  config.model.num_layers = 2
  config.model.hidden_channels = 8
  config.model.out_hidden_channels = 16
  config.model.first_kernel_size = 3
  # XLA:CPU runs convolutions inside a while loop (nn.scan over layers) several times slower.
  config.model.scan_layers = False
  ms = config.model.multiscale
  ms.core = 'row_lstm'
  ms.small_size = 4
  ms.cond_channels = 8
  ms.upsampler_layers = 2  # Strides (2, 1).
  ms.small_num_layers = 2
  ms.small_hidden_channels = 8
  config.optim.name = 'adam'
  config.optim.learning_rate = 3e-3
  config.train.batch_size = 8
  config.train.num_steps = 30
  config.train.log_every = 5
  config.train.eval_every = 15
  config.train.checkpoint_every = 10
  config.train.sample_every = 30
  config.train.keep_checkpoints = 2
  config.eval.batch_size = 64
  config.eval.max_examples = 128
  config.sample.num_samples = 4
  return config
