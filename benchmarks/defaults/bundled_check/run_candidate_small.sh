#!/usr/bin/env bash
# Item 2, small checks of one candidate: `skood bench --quick` (its flow/flow-mean with the
# registry's quick budget under the candidate's parameters), seeds 0-4, and the demo's two flows
# with the candidate's parameters, detector seeds 0-4. Current code.
# Usage: run_candidate_small.sh TAG PARAMS      e.g. run_candidate_small.sh noise01 noise_std=0.1
set -euo pipefail
HERE=/work/main/benchmarks/defaults/bundled_check
PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
tag=$1 params=$2
cd /tmp
rm -rf /tmp/bc_cand_$tag
PYTHONPATH=/work/main $PY -c "import sys; from skood.cli import main; sys.exit(main(sys.argv[1:]))" \
  bench --quick --datasets digits-ovr-0 breast-cancer wine --seeds 0 1 2 3 4 \
  --max-train 5000 --max-test 10000 --quiet --out /tmp/bc_cand_$tag \
  --detector "flow:$params" --detector "flow-mean:$params" > /dev/null 2>&1
cp /tmp/bc_cand_$tag/results.csv $HERE/cand_quick_$tag.csv
PYTHONPATH=/work/main $PY $HERE/demo_seeds.py --tag $tag --params "$params" --out $HERE/cand_demo.csv
echo "done $tag $(date -u +%T)"
