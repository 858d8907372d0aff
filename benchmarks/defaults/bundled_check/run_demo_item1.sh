#!/usr/bin/env bash
# Item 1, demo part: `skood demo`'s two flows, detector seeds 0-4, new code then old (fdb2ccb).
set -euo pipefail
HERE=/work/main/benchmarks/defaults/bundled_check
PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd /tmp
rm -f $HERE/item1_demo.csv
PYTHONPATH=/work/main $PY $HERE/demo_seeds.py --tag new --out $HERE/item1_demo.csv
PYTHONPATH=/tmp/old_wt $PY $HERE/demo_seeds.py --tag old --out $HERE/item1_demo.csv
