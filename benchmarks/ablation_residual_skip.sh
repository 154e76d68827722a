#!/usr/bin/env bash
# The paper's residual/skip ablation on the offline protocol (docs/results.md section 1b).
#
# The paper's Table 2 compares, for a 12-layer Row LSTM on CIFAR-10, residual connections
# only (3.07 bits/dim), skip connections only (3.09) and both (3.06). This script trains the
# same architecture at MNIST size (12 layers, h = 16, experiments/mnist_rowlstm.py otherwise)
# with each combination on the offline protocol of benchmarks/offline_protocol.sh: the 4,500
# bundled MNIST digits for training, the real 10,000-image MNIST test set for the test NLL.
#
#   IDX=/path/to/mnist STEPS=2000 bash benchmarks/ablation_residual_skip.sh [variants...]
#
# Variants: both, residual, skip, neither (default: all four, in that order). Each run's
# summary line (steps, time, validation and test NLL in nats) is appended to
# $OUT/summary.txt; metrics and checkpoints stay in $OUT/<variant>/. TEST=0 skips the test
# set (IDX not needed): the validation NLL on the 500 held-out bundled digits is then the
# measure, and a run is ~10 minutes shorter on a loaded 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
IDX=${IDX:-}
TEST=${TEST:-1}
OUT=${OUT:-runs/ablation}
STEPS=${STEPS:-2000}
LAYERS=${LAYERS:-12}
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=(both residual skip neither)
TEST_FLAGS=()
if [ "$TEST" != 0 ]; then
  if [ -z "$IDX" ] || [ ! -d "$IDX" ]; then
    echo "ablation_residual_skip: no MNIST IDX folder at '$IDX'; set IDX=/path/to/mnist" \
      "(or TEST=0 for the validation NLL only)" >&2
    exit 1
  fi
  TEST_FLAGS=(--config.data.idx_dir="$IDX")
fi
mkdir -p "$OUT"
for v in "${VARIANTS[@]}"; do
  case "$v" in
    both) residual=True; skip=True ;;
    residual) residual=True; skip=False ;;
    skip) residual=False; skip=True ;;
    neither) residual=False; skip=False ;;
    *) echo "ablation_residual_skip: unknown variant '$v'; use both, residual, skip or neither" >&2
       exit 1 ;;
  esac
  start=$(date +%s)
  "$PY" -m pixel_jax.main --config=experiments/mnist_rowlstm.py --workdir="$OUT/$v" \
    --config.model.num_layers="$LAYERS" --config.model.residual="$residual" \
    --config.model.skip="$skip" \
    --config.train.num_steps="$STEPS" --config.train.eval_every=500 \
    --config.train.sample_every="$STEPS" "${TEST_FLAGS[@]}" 2>"$OUT/$v.log" \
    | tee "$OUT/$v.out"
  echo "rowlstm_${LAYERS}x16_$v residual=$residual skip=$skip steps=$STEPS" \
    "wall_s=$(( $(date +%s) - start )) $(tail -n 1 "$OUT/$v.out")" >> "$OUT/summary.txt"
done
