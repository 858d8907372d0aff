"""Paired per-seed differences of dataset-mean AUROC: A minus B, per detector, same seeds.

Usage: python paired.py A.csv B.csv [--detector flow ...]
A detector named in A as X is compared with the same name in B, or map with --map A_NAME=B_NAME.
"""
import argparse
import csv
from collections import defaultdict

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("a")
ap.add_argument("b")
ap.add_argument("--map", action="append", default=[], help="A_DETECTOR=B_DETECTOR")
args = ap.parse_args()


def load(path):
    c = defaultdict(dict)
    for r in csv.DictReader(open(path)):
        if r["status"] == "ok":
            c[r["detector"]][r["dataset"], int(r["seed"])] = float(r["auroc"])
    return c


A, B = load(args.a), load(args.b)
pairs = [m.rsplit("=", 1) for m in args.map] or [(d, d) for d in A if d in B]
for da, db in pairs:
    keys = sorted(set(A[da]) & set(B[db]))
    seeds = sorted({s for _, s in keys})
    sets = sorted({d for d, _ in keys})
    diff = np.array([np.mean([A[da][d, s] - B[db][d, s] for d in sets]) for s in seeds])
    per_cell = np.array([A[da][k] - B[db][k] for k in keys])
    print(f"{da} - {db}: per-seed {' '.join(f'{x:+.4f}' for x in diff)}; mean {diff.mean():+.4f} "
          f"± {diff.std(ddof=1):.4f} (se {diff.std(ddof=1)/np.sqrt(len(diff)):.4f}); "
          f"cells A>B {int((per_cell > 0).sum())}/{len(per_cell)}, ties {int((per_cell == 0).sum())}")
