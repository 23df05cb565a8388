#!/usr/bin/env bash
# The GPU check, for a machine with one CUDA GPU (under 5 minutes): the CUDA tests of vae_core, the
# CUDA paths of fit / evaluate / the explorer export against the CPU (benchmarks/gpu_paths.py), and
# the throughput, quality and IWAE benchmarks on the GPU. Results: benchmarks/results/gpu/*.json
# (then `python -m benchmarks --report` puts them on the benchmarks page).
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]     (exit 2 when no GPU is visible)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${1:-benchmarks/results/gpu}
mkdir -p "$OUT"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 2)"; then
  echo "no GPU visible to torch: nothing to check" >&2
  exit 2
fi
"$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
start=$SECONDS
"$PY" -m pytest -q -p no:cacheprovider tests/test_train.py tests/test_evaluate.py tests/test_explorer.py \
  -m "not browser" -k "cuda or device" 2>&1 | tail -3
"$PY" -m benchmarks.gpu_paths --out "$OUT"
"$PY" -m benchmarks throughput quality iwae --device cuda --out "$OUT"
echo "GPU check done in $((SECONDS - start)) s; results in $OUT"
