#!/usr/bin/env bash
# The GPU checks in one call: the CUDA-only tests, then the GPU figures (benchmarks/gpu/gpu.py).
# On a machine without CUDA it runs the CPU half and says plainly that the CUDA half was skipped.
#   bash benchmarks/gpu/run.sh [OUT_DIR]        (repo root; needs `make install` first)
set -u
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${1:-benchmarks/gpu/out}
mkdir -p "$OUT"
status=0
if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    "$PY" -c "import torch; print('CUDA:', torch.cuda.get_device_name(0), '| torch', torch.__version__)" \
        | tee "$OUT/device.txt"
    "$PY" -m pytest -q -p no:cacheprovider -m cuda tests 2>&1 | tee "$OUT/cuda_tests.log"
    status=${PIPESTATUS[0]}
else
    echo "CUDA half skipped: torch $("$PY" -c 'import torch; print(torch.__version__)') sees no CUDA" \
        "device on this machine, so the CUDA-only tests (pytest -m cuda) did not run." \
        | tee "$OUT/device.txt"
fi
"$PY" benchmarks/gpu/gpu.py --out "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu.md"
exit $(( status || PIPESTATUS[0] ))
