"""Mean +- std (over seeds) of the per-seed mean AUROC over datasets, per (file, detector).

Usage: python summarize.py TAG=FILE.csv [...] [--per-dataset]
For each configuration: per seed, the mean AUROC over the datasets; then mean +- std (ddof=1)
of those seed means; also per dataset mean +- std over seeds, and the total fit seconds per seed.
"""
import csv
import sys
from collections import defaultdict

import numpy as np

per_dataset = "--per-dataset" in sys.argv
args = [a for a in sys.argv[1:] if not a.startswith("--")]
print("| configuration | detector | seeds | mean AUROC (± std over seeds) | per-dataset AUROC mean ± std | "
      "fit s per seed (mean) |")
print("|---|---|---|---|---|---|")
for arg in args:
    tag, path = arg.split("=", 1)
    cells = defaultdict(dict)  # detector -> (dataset, seed) -> row
    for r in csv.DictReader(open(path)):
        if r["status"] == "ok":
            cells[r["detector"]][r["dataset"], int(r["seed"])] = r
    for det, c in cells.items():
        datasets = sorted({d for d, _ in c})
        seeds = sorted({s for _, s in c})
        a = np.array([[float(c[d, s]["auroc"]) for d in datasets] for s in seeds])
        f = np.array([[float(c[d, s]["fit_s"]) for d in datasets] for s in seeds])
        m = a.mean(axis=1)
        pd = "; ".join(f"{d} {a[:, j].mean():.4f}±{a[:, j].std(ddof=1):.4f}" for j, d in enumerate(datasets))
        seedvals = " ".join(f"{x:.3f}" for x in m)
        print(f"| {tag} | {det} | {len(seeds)} | {m.mean():.4f} ± {m.std(ddof=1):.4f} (seeds: {seedvals}) | "
              f"{pd} | {f.sum(axis=1).mean():.1f} |")
