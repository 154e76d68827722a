"""Row LSTM, 12 layers x h=384, batch 64, on ImageNet 32x32 (the paper: 3.86 bits/dim).

  python -m pixel_jax.main --config=experiments/imagenet32_rowlstm.py --workdir=runs/in32 \
      --config.data.manual_dir=DIR

DIR holds train_32x32.tar and valid_32x32.tar, the paper authors' downsampled ImageNet
(or the npz batches Imagenet32_train_npz/, Imagenet32_val_npz/: a different resize, numbers
NOT comparable with the paper's). Prepared once into data_dir (about 4 GB), then streamed
from disk. Needs several accelerators; the batch is split over all devices on the ('data',)
mesh. The
paper's network (configs.imagenet_config): residual and skip connections, output hidden
width 1024; the paper reports 3.86 bits/dim on the ImageNet 32x32 validation set.
"""

from pixel_jax import configs


def get_config():
  config = configs.imagenet_config('row_lstm', image_size=32)
  config.model.num_layers = 12
  config.model.hidden_channels = 384
  config.train.batch_size = 64  # Global: split over all devices on the ('data',) mesh.
  # Every layer in one scan of H + L - 1 rows (models/wavefront.py); docs/results.md times it.
  config.model.wavefront = False
  return config
