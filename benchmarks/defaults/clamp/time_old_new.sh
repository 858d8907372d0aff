#!/usr/bin/env bash
# Wall time of `skood bench --quick` (twice, alternated) and `skood demo` (once) with the old CPU flow's code (fdb2ccb,
# checked out as a git worktree in /tmp/old_wt) and with the current code, one process at a time, one torch thread.
# Usage, from the repository root: benchmarks/defaults/clamp/time_old_new.sh
set -u
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
repo=$(pwd)
PY=$repo/.venv/bin/python
[ -d /tmp/old_wt ] || git worktree add -f /tmp/old_wt fdb2ccb > /dev/null
run() {  # run CODE_DIR OUT_NAME skood-arguments...
  local src=$1 name=$2
  shift 2
  local t0 t1
  t0=$(date +%s.%N)
  (cd /tmp && PYTHONPATH=$src $PY -c "import sys; from skood.cli import main; sys.exit(main(sys.argv[1:]))" "$@" \
    > /tmp/$name.log 2>&1)
  t1=$(date +%s.%N)
  echo "$name: $(echo "$t1 - $t0" | bc) s wall"
}
for rep in 1 2; do
  run /tmp/old_wt quick_old$rep bench --quick --quiet --out /tmp/quick_old$rep
  run "$repo" quick_new$rep bench --quick --quiet --out /tmp/quick_new$rep
done
run /tmp/old_wt demo_old demo
run "$repo" demo_new demo
