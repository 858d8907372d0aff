"""`skood bench --quick`'s flow cells (its 3 sets x seeds 0-4, the registry's quick budget) for each spec.

Usage: OMP_NUM_THREADS=1 python quick_variants.py OUT.csv SPEC [SPEC ...]   e.g. "flow:clamp=0.5"
Appends rows ``spec, dataset, seed, auroc, fit_s, error`` to OUT.csv and prints each spec's means.
"""

import csv
import sys

from skood.bench.data import bundled_datasets, split
from skood.bench.run import run_cell
from skood.registry import parse_detector

ds = bundled_datasets()
data = {name: ds[name]() for name in ["wine", "breast-cancer", "digits-ovr-0"]}
out = sys.argv[1]
w = csv.writer(open(out, "a", newline=""))
for spec in sys.argv[2:]:
    name, params = parse_detector(spec)
    per = {}
    for dname, d in data.items():
        for seed in range(5):
            sp = split(d, "semi", seed, max_train=5000, max_test=10000)
            r = run_cell(
                name,
                params,
                sp,
                dict(protocol="semi", group="b", dataset=dname, seed=seed),
                True,
                1,
            )
            w.writerow([spec, dname, seed, r.get("auroc"), r.get("fit_s"), r.get("error", "")])
            per.setdefault(dname, []).append(r.get("auroc") or 0)
    m = {k: sum(v) / len(v) for k, v in per.items()}
    print(
        spec,
        {k: round(v, 4) for k, v in m.items()},
        "mean %.4f" % (sum(m.values()) / 3),
        flush=True,
    )
