#!/usr/bin/env bash
# GPU check (issue 13 part 3), under 5 minutes on one GPU:
#   1. CUDA against CPU detections on the golden images (float32 must match; float16 is reported);
#   2. end-to-end frames/s of the bundled model and R-50 at 360x640, float32 and float16, with and
#      without the tracker, and peak GPU memory.
# Exit status: 0 passed, 1 a parity check failed, 3 no CUDA here, 124 it ran past 5 minutes.
#   bash benchmarks/gpu_check.sh [bench_gpu.py options, e.g. --compile --frames 200]
# PYTHON picks the interpreter (default: .venv/bin/python if present, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec timeout 300 "$PYTHON" benchmarks/bench_gpu.py "$@"
