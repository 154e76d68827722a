"""Row LSTM, 4 layers x h=512, no residual, batch 32, on ImageNet 64x64 (the paper: 3.63
bits/dim).

  python -m pixel_jax.main --config=experiments/imagenet64_rowlstm.py --workdir=runs/in64 \
      --config.data.manual_dir=DIR

DIR holds train_64x64.tar and valid_64x64.tar, the paper authors' downsampled ImageNet
(or the npz batches Imagenet64_train_part1_npz/, ..._part2_npz/, Imagenet64_val_npz/: a
different resize, numbers NOT comparable with the paper's). Prepared once into data_dir
(about 15 GB), then streamed from disk. Needs several accelerators. The
paper's network for this setting: skip connections but no residual connections (the one
paper model without them), output hidden width 1024; the paper reports 3.63 bits/dim on the
ImageNet 64x64 validation set.
"""

from pixel_jax import configs


def get_config():
  config = configs.imagenet_config('row_lstm', image_size=64)
  config.model.num_layers = 4
  config.model.hidden_channels = 512
  config.model.residual = False  # The paper's 64x64 model has no residual connections.
  config.train.batch_size = 32
  # Every layer in one scan of H + L - 1 rows (models/wavefront.py); docs/results.md times it.
  config.model.wavefront = False
  return config
