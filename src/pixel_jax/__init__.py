"""pixel_jax: PixelRNN (Row LSTM, Diagonal BiLSTM, PixelCNN, Multi-Scale) in JAX/Flax."""

__version__ = '0.1.0'
