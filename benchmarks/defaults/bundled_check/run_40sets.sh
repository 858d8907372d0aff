#!/usr/bin/env bash
# Item 2: one candidate on the 40 sets, seed 0 (defaults.md's command), one thread.
# Usage: run_40sets.sh TAG SPEC
set -euo pipefail
HERE=/work/main/benchmarks/defaults/bundled_check
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd /work/main
rm -rf /tmp/bc40_$1
.venv/bin/skood bench --data ../shared/data/adbench --bundled --seeds 0 --max-train 5000 \
    --max-test 10000 --quiet --out /tmp/bc40_$1 --detector "$2" > /dev/null 2>&1
cp /tmp/bc40_$1/results.csv $HERE/cand40_$1.csv
echo "done $1 $(date -u +%T)"
