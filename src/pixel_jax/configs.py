"""The base experiment configuration that every file in experiments/ derives from.

A config is a nested ml_collections.ConfigDict with the sections data, model, optim,
train, eval, sample and mesh. Experiment files call `base_config()` and override a few
fields; command-line flags override any field (--config.train.num_steps=100).
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """Returns the defaults shared by all experiments (binarized MNIST, Row LSTM)."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  # TFDS name: a catalog dataset (binarized_mnist, mnist, cifar10, downsampled_imagenet/32x32,
  # ...) or a bundled offline builder (mnist_bundled, photos_bundled, mnist_idx).
  config.data.name = 'mnist_bundled'
  config.data.image_size = 28
  config.data.num_channels = 1
  config.data.num_levels = 2  # 2: binary (Bernoulli); 256: 8-bit (256-way softmax).
  # How grey MNIST becomes binary: 'static' (stochastic, sampled once with a fixed seed),
  # 'dynamic' (resampled every batch), 'threshold' (> 127) or 'none' (data already binary
  # or num_levels == 256).
  config.data.binarization = 'static'
  config.data.binarization_seed = 0
  # When a catalog MNIST cannot be prepared offline, use the bundled real digits instead
  # (with a loud warning). False turns that into an error.
  config.data.allow_fallback = True
  config.data.data_dir = ''  # TFDS data_dir; '' means TFDS's default (~/tensorflow_datasets).
  config.data.idx_dir = ''  # Directory with MNIST IDX files, for data.name = 'mnist_idx'.
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.test_split = 'test'

  config.model = ml_collections.ConfigDict()
  config.model.name = 'row_lstm'  # 'row_lstm' | 'diagonal_bilstm' | 'pixelcnn' | 'multiscale'
  config.model.num_layers = 7
  config.model.hidden_channels = 16  # h: LSTM state size; residual stream has 2h channels.
  config.model.out_hidden_channels = 32  # Width of the hidden 1x1 output layers (1024 colour).
  config.model.first_kernel_size = 7  # The mask-A input convolution.
  config.model.residual = True
  config.model.skip = False  # Learnable 1x1 skip connection from every layer to the output.
  config.model.scan_layers = True  # nn.scan over identical layers: compile time flat in depth.
  config.model.dtype = 'float32'  # Compute dtype: 'float32' or 'bfloat16' (params stay fp32).
  # Multi-Scale PixelRNN, used when model.name = 'multiscale' (models/multiscale.py says why):
  # an unconditional PixelRNN on a small s x s image and a conditional one (the fields above)
  # on the full image.
  config.model.multiscale = ml_collections.ConfigDict()
  config.model.multiscale.core = 'row_lstm'  # Both networks: 'row_lstm' | 'diagonal_bilstm'.
  config.model.multiscale.small_size = 14  # s; must divide data.image_size.
  config.model.multiscale.subsample = 'stride'  # Every (n/s)-th pixel: keeps exact levels.
  config.model.multiscale.cond_channels = 16  # c: channels of the conditioning map.
  config.model.multiscale.upsampler_layers = 1  # Transposed convolutions, strides -> n/s.
  config.model.multiscale.small_num_layers = 7  # The small-image network's depth,
  config.model.multiscale.small_hidden_channels = 16  # width h
  config.model.multiscale.small_residual = True  # and residual connections.

  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'rmsprop'  # 'rmsprop' (the paper) or 'adam'.
  config.optim.learning_rate = 1e-3
  config.optim.schedule = 'constant'  # 'constant' | 'cosine'
  config.optim.warmup_steps = 0
  config.optim.grad_clip_norm = 1.0  # 0 disables clipping.
  config.optim.weight_decay = 0.0

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 16  # Global batch, split over the 'data' mesh axis.
  config.train.num_steps = 2000
  config.train.log_every = 50
  config.train.eval_every = 500
  config.train.checkpoint_every = 500
  config.train.sample_every = 1000  # 0 disables periodic sample grids.
  config.train.keep_checkpoints = 3

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 100
  config.eval.max_examples = 0  # 0: the whole split.

  config.sample = ml_collections.ConfigDict()
  config.sample.num_samples = 16
  config.sample.method = 'cached'  # 'cached' | 'naive'
  config.sample.temperature = 1.0

  config.mesh = ml_collections.ConfigDict()
  config.mesh.num_devices = -1  # -1: every device on the ('data',) mesh.
  return config
