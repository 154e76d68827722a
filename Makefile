# pixel_jax developer commands. `make install test` is all a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := constraints/lock.txt
LOWER_VENV ?= .venv-lower
SMOKE_FLAGS := --config=tiny --config.train.num_steps=4 --config.train.eval_every=4 \
	--config.train.checkpoint_every=4 --config.train.sample_every=4 --config.eval.max_examples=32

.PHONY: install lint format test test-fast smoke-lower lock bench train clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) setuptools wheel

# The exact versions the suite is tested with (constraints/lock.txt).
install: $(PY)
	$(PY) -m pip install -q -c $(LOCK) -e '.[dev,offline,tf]'

# ruff (pyflakes, pycodestyle, import order, bugbear, and the formatter's check) and mypy on
# src/; pyproject.toml configures all three.
lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy src

# Rewrites the tree in the [tool.ruff.format] style (`make lint` checks it).
format:
	$(PY) -m ruff format .

test:
	$(PY) -m pytest -n 2 -q tests

test-fast:
	$(PY) -m pytest -n 2 -q -x tests -m "not slow"

# The lower bounds: a venv that already holds them (constraints/lower.txt), `pip install .`
# must leave every one of them alone, then train a tiny model, resume it and sample from it.
smoke-lower:
	rm -rf $(LOWER_VENV)
	$(PYTHON) -m venv $(LOWER_VENV)
	$(LOWER_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOWER_VENV)/bin/python -m pip install -q -r constraints/lower.txt
	$(LOWER_VENV)/bin/python -m pip freeze > $(LOWER_VENV)/before.txt
	$(LOWER_VENV)/bin/python -m pip install -q '.[offline]'
	$(LOWER_VENV)/bin/python -m pip freeze | grep -v '^pixel.jax' > $(LOWER_VENV)/after.txt
	diff $(LOWER_VENV)/before.txt $(LOWER_VENV)/after.txt
	cd $(LOWER_VENV) && bin/python -m pixel_jax.main $(SMOKE_FLAGS) --workdir=smoke \
	  --config.data.data_dir=tfds
	cd $(LOWER_VENV) && bin/python -m pixel_jax.main $(SMOKE_FLAGS) --workdir=smoke \
	  --config.data.data_dir=tfds --config.train.num_steps=6
	cd $(LOWER_VENV) && bin/python -m pixel_jax.sample --workdir=smoke --num_samples=4
	test -f $(LOWER_VENV)/smoke/sampled/samples.png

# After changing dependencies in setup.cfg: rm -rf .venv, pip install -e '.[dev,offline,tf]'
# into a fresh venv without constraints, run the suite, then `make lock`.
lock:
	{ sed -n '/^#/p' $(LOCK); $(PY) -m pip freeze --all --exclude-editable | grep -v '^pip=='; } \
	  > $(LOCK).new
	mv $(LOCK).new $(LOCK)

bench:
	$(PY) benchmarks/run_all.py

train:
	$(PY) -m pixel_jax.main --config=mnist_rowlstm --workdir=runs/mnist_rowlstm

clean:
	rm -rf build dist src/*.egg-info .pytest_cache $(LOWER_VENV)
