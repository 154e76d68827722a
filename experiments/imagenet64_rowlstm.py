"""Row LSTM, 4 layers x h=512, no residual, batch 32, on ImageNet 64x64 (SPEC.md section 6:
3.63 bits/dim).

  python -m pixel_jax.main --config=experiments/imagenet64_rowlstm.py --workdir=runs/in64

Needs downsampled_imagenet/64x64 prepared as array_record and several accelerators.
"""

from pixel_jax import configs


def get_config():
  # 8-bit colour: a 256-way softmax per sub-pixel, reported in bits/dim. A TFDS catalog
  # dataset that must be prepared as array_record (the input pipeline says how); no fallback.
  config = configs.base_config()
  config.data.name = 'downsampled_imagenet/64x64'
  config.data.image_size = 64
  config.data.num_channels = 3
  config.data.num_levels = 256
  config.data.binarization = 'none'
  config.data.allow_fallback = False
  config.model.name = 'row_lstm'
  config.model.num_layers = 4
  config.model.hidden_channels = 512
  config.model.out_hidden_channels = 1024  # The paper's colour output width.
  config.model.scan_layers = True  # Accelerator configs: compile time flat in depth.
  config.optim.name = 'rmsprop'
  config.optim.learning_rate = 1e-3
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 1000
  config.optim.grad_clip_norm = 1.0
  config.train.batch_size = 32
  config.train.num_steps = 400_000
  config.train.log_every = 100
  config.train.eval_every = 10_000
  config.train.checkpoint_every = 2_000
  config.train.sample_every = 20_000
  config.eval.batch_size = 64
  config.eval.max_examples = 0
  config.sample.num_samples = 16
  config.model.residual = False  # The paper's 64x64 model has no residual connections.
  config.data.eval_split = 'validation'
  config.data.test_split = 'validation'  # The paper reports on the validation set.
  return config
