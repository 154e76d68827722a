"""Experiment configs, installed as pixel_jax.experiments: `--config=NAME` or `--config=FILE`."""
