# pixel_jax developer commands. `make install test` is all a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test test-fast bench train clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

install: $(PY)
	$(PY) -m pip install -q -e '.[dev]'

test:
	$(PY) -m pytest -n 2 -q tests

test-fast:
	$(PY) -m pytest -n 2 -q -x tests -k "not slow"

bench:
	$(PY) benchmarks/run_all.py

train:
	$(PY) -m pixel_jax.main --config=experiments/mnist_rowlstm.py --workdir=runs/mnist_rowlstm

clean:
	rm -rf build dist src/*.egg-info .pytest_cache
