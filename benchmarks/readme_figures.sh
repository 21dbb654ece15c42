#!/usr/bin/env bash
# Re-measure the README's speed figures in one go, with the machine probe before and after
# (issue 15 part 9): a figure next to a slow probe means a slow or busy machine, not a regression.
#
#   bash benchmarks/readme_figures.sh [OUT_DIR]        # default outputs/readme_figures/<date>
#
# Run it on a quiet machine (no training, no other benchmark: 2 cores means one stray process halves
# the figures). Each step's full output goes to OUT_DIR/<step>.txt; the summary prints as it goes.
# Quality rows that do not depend on speed (AP of the bundled model, the tracker and methods tables)
# and the long memory run have their own commands in the README and are not repeated here.
# Set TRACKEVAL_PYTHON to an interpreter that imports trackeval to time TrackEval in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${1:-outputs/readme_figures/$(date +%F)}
mkdir -p "$OUT"
step() {  # step NAME COMMAND...: run, keep the output, print its last lines
    local name=$1; shift
    echo "== $name: $*"
    local start=$SECONDS
    if ! "$@" > "$OUT/$name.txt" 2>&1; then
        echo "   FAILED (see $OUT/$name.txt)"; tail -5 "$OUT/$name.txt"; return 0
    fi
    tail -n "${TAIL:-12}" "$OUT/$name.txt" | sed 's/^/   /'
    echo "   ($((SECONDS - start)) s)"
}
EVAL_ARGS=(--repeat 5)
if [[ -n "${TRACKEVAL_PYTHON:-}" ]]; then EVAL_ARGS+=(--trackeval-python "$TRACKEVAL_PYTHON"); fi

step probe_before "$PY" benchmarks/bench_probe.py
step eval "$PY" benchmarks/bench_eval.py "${EVAL_ARGS[@]}"
step startup "$PY" benchmarks/bench_startup.py --repeat 3
step e2e "$PY" benchmarks/bench_e2e.py --frames 30 --repeat 3
step forward "$PY" benchmarks/bench_forward.py --threads 2 --runs 10
step onnx_bundled "$PY" benchmarks/bench_onnx.py
step onnx_r50 "$PY" benchmarks/bench_onnx.py --model r50 --size 360x640 --frames 20
step shard "$PY" benchmarks/bench_shard.py
step train "$PY" benchmarks/bench_train.py --iters 3
step synth bash -c "time $PY -m streamvis synth --out $OUT/synth --videos 400 --seed 0 --split train"
step demo bash -c "time $PY -m streamvis demo --out $OUT/demo"
step probe_after "$PY" benchmarks/bench_probe.py
echo "outputs in $OUT"
