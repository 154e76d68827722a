"""PixelCNN, 15 residual blocks x h=128, on CIFAR-10 32x32 (SPEC.md section 6: 3.14 bits/dim).

  python -m pixel_jax.main --config=experiments/cifar10_pixelcnn.py --workdir=runs/c10_cnn

Needs cifar10 prepared as array_record and an accelerator. Reports test bits/dim.
"""

from pixel_jax import configs


def get_config():
  # 8-bit colour: a 256-way softmax per sub-pixel, reported in bits/dim. A TFDS catalog
  # dataset that must be prepared as array_record (the input pipeline says how); no fallback.
  config = configs.base_config()
  config.data.name = 'cifar10'
  config.data.image_size = 32
  config.data.num_channels = 3
  config.data.num_levels = 256
  config.data.binarization = 'none'
  config.data.allow_fallback = False
  # CIFAR-10 has no validation split: hold out the last 2% of train for model selection.
  config.data.train_split = 'train[:98%]'
  config.data.eval_split = 'train[98%:]'
  config.model.name = 'pixelcnn'
  config.model.num_layers = 15
  config.model.hidden_channels = 128
  config.model.out_hidden_channels = 1024  # The paper's colour output width.
  config.model.scan_layers = True  # Accelerator configs: compile time flat in depth.
  config.optim.name = 'rmsprop'
  config.optim.learning_rate = 1e-3
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 1000
  config.optim.grad_clip_norm = 1.0
  config.train.batch_size = 16
  config.train.num_steps = 400_000
  config.train.log_every = 100
  config.train.eval_every = 10_000
  config.train.checkpoint_every = 2_000
  config.train.sample_every = 20_000
  config.eval.batch_size = 64
  config.eval.max_examples = 0
  config.sample.num_samples = 16
  return config
