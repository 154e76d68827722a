"""Diagonal BiLSTM, 1 layer x h=32, on binarized MNIST (SPEC.md section 6: 80.75 nats).

  python -m pixel_jax.main --config=experiments/mnist_diagbilstm_1x32.py --workdir=/tmp/dbl1

Default: 500 steps of batch 16, offline on the bundled digits; a few minutes on a 2-core
CPU. Paper-level: --config.train.num_steps=200000 on a GPU with binarized_mnist prepared.
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
  config.model.name = 'diagonal_bilstm'
  config.model.num_layers = 1
  config.model.hidden_channels = 32
  config.model.out_hidden_channels = 32  # The paper's MNIST output width.
  # XLA:CPU runs the convolutions inside nn.scan's while loop 5-30x slower than unrolled;
  # with at most 15 layers, unrolling costs only compile time.
  config.model.scan_layers = False
  config.optim.name = 'rmsprop'  # The paper's optimiser.
  config.optim.learning_rate = 1e-3
  config.optim.grad_clip_norm = 1.0
  config.train.batch_size = 16
  # The default is a CPU demo (a few minutes, loss visibly falling, far from converged);
  # the paper-level numbers need ~100k+ steps: --config.train.num_steps=200000.
  config.train.num_steps = 500
  config.train.log_every = 25
  config.train.eval_every = 250
  config.train.checkpoint_every = 100
  config.train.sample_every = 500
  config.eval.batch_size = 100
  config.sample.num_samples = 16
  return config
