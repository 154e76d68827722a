#!/usr/bin/env bash
# The GPU runs of docs/results.md, on a machine that has Python, JAX with CUDA, Flax, Optax
# and Orbax preinstalled but no network (e.g. an H100 or H200 machine without internet access).
#
#   bash benchmarks/gpu_offline.sh bench OUT_DIR          # make bench's models + sampling
#   bash benchmarks/gpu_offline.sh train OUT_DIR STEPS    # MNIST-size runs (MODELS="rowlstm diagbilstm")
#   bash benchmarks/gpu_offline.sh train_cifar OUT_DIR STEPS   # CIFAR size (CIFAR_MODEL=rowlstm)
#
# Packages that machine lacks travel as wheels in .whl/ (downloaded here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl tensorflow-datasets==4.9.10 array-record==0.8.6 \
#     dm-tree immutabledict simple_parsing docstring-parser tensorflow-metadata \
#     googleapis-common-protos termcolor toml mlxtend==0.25.0 ml-collections==1.1.0 \
#     tensorboardX importlib_resources   (and `pip download --no-deps promise`, an sdist));
# the real MNIST test set travels in .gpudata/mnist (copy the IDX files there).
# With network, `pip install -e '.[gpu]'` replaces all of this.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?bench or train}
OUT=${2:-/tmp/gpu_out}
STEPS=${3:-20000}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --no-build-isolation --target /tmp/site .whl/* >/dev/null
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1 TFDS_DATA_DIR=/tmp/tfds
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import sys, jax, flax; print("python", sys.version.split()[0], "jax", jax.__version__,
  "flax", flax.__version__, jax.devices())'

case $what in
  bench)
    python3 benchmarks/run_all.py --sections=models,sampling --out="$OUT/bench_gpu.json" \
      --figures="$OUT" --no_plots --doc=''
    ;;
  train)
    # MNIST size on the bundled digits (static binarization, seed 0; test = real MNIST).
    for m in ${MODELS:-rowlstm diagbilstm}; do
      python3 -m pixel_jax.main --config="experiments/mnist_$m.py" --workdir="/tmp/w/mnist_$m" \
        --config.train.num_steps="$STEPS" --config.train.eval_every=$((STEPS / 4)) \
        --config.train.sample_every="$STEPS" --config.data.idx_dir=.gpudata/mnist \
        --config.data.data_dir=/tmp/tfds 2>"$OUT/mnist_$m.log" | tail -n 1 | tee -a "$OUT/summary.txt"
      cp "/tmp/w/mnist_$m/samples/step_$STEPS.png" "$OUT/mnist_${m}_samples.png" || true
    done
    ;;
  train_cifar)
    # CIFAR size (12 x 128, 32x32x3, 256 levels) on the bundled real photographs.
    m=${CIFAR_MODEL:-rowlstm}
    python3 -m pixel_jax.main --config="experiments/cifar10_$m.py" --workdir="/tmp/w/cifar_$m" \
      --config.data.name=photos_bundled --config.data.train_split=train \
      --config.data.eval_split=validation --config.data.data_dir=/tmp/tfds \
      --config.train.num_steps="$STEPS" --config.train.eval_every=$((STEPS / 2)) \
      --config.train.sample_every="$STEPS" 2>"$OUT/cifar_$m.log" | tail -n 1 | tee -a "$OUT/summary.txt"
    cp "/tmp/w/cifar_$m/samples/step_$STEPS.png" "$OUT/photos_${m}_samples.png" || true
    ;;
  *) echo "gpu_offline.sh: unknown step '$what' (bench, train, train_cifar)" >&2; exit 2 ;;
esac
