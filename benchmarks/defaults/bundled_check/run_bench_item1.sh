#!/usr/bin/env bash
# Item 1, bench part: old (fdb2ccb) and new flow / flow-mean on the 3 --quick sets, seeds 0-4,
# at the --quick budget and at the full budget. One process at a time, one thread.
# Needs a worktree of the old code: git -C /work/main worktree add /tmp/old_wt fdb2ccb
# Runs from /tmp so that the cwd does not shadow PYTHONPATH.
set -euo pipefail
HERE=/work/main/benchmarks/defaults/bundled_check
PY=/work/main/.venv/bin/python
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd /tmp
run() {  # code_dir tag extra-args...
  local code=$1 tag=$2; shift 2
  local out=/tmp/bc_$tag
  [[ " $* " == *" --resume "* ]] || rm -rf "$out"
  PYTHONPATH=$code $PY -c "import sys; from skood.cli import main; sys.exit(main(sys.argv[1:]))" \
    bench --datasets digits-ovr-0 breast-cancer wine --seeds 0 1 2 3 4 \
    --max-train 5000 --max-test 10000 --quiet --out "$out" \
    "$@" > /dev/null
  cp "$out/results.csv" "$HERE/item1_$tag.csv"
  echo "done $tag $(date -u +%T)"
}
for which in "$@"; do
  case $which in
    new_quick) run /work/main new_quick --quick --detector flow --detector flow-mean ;;
    old_quick) run /tmp/old_wt old_quick --quick --detector flow --detector flow-mean ;;
    new_full)  run /work/main new_full --detector flow --detector flow-mean ;;
    # The old full-budget flow takes ~50 s a cell here; after 4 cells (digits-ovr-0, seeds 0-1,
    # both flows) the run was stopped and resumed with the q=0.05 flow only (bench --quick's flow).
    old_full)  run /tmp/old_wt old_full --detector flow --resume ;;
  esac
done
