"""Side-by-side table of detector configurations from `skood bench` result CSVs.

Reads one or more ``results.csv`` / ``results.partial.csv`` files written by ``skood bench``
(same protocol, same seeds), keeps the cells of the detectors asked for (all by default), and
prints, per configuration: the datasets it ran on, mean AUROC, mean rank among the compared
configurations (rank 1 = best AUROC on a dataset, ties averaged), mean FPR95, and the median and
total fit seconds. Only datasets on which every compared configuration has an ``ok`` cell count.

Usage (repo root):
    .venv/bin/python benchmarks/defaults/defaults.py RESULTS.csv [...] [--detector SPEC ...]
        [--seed S] [--label SPEC=NAME ...]
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict

import numpy as np
from scipy.stats import rankdata


def load(paths, seed):
    """detector -> dataset -> {auroc, fpr95, fit_s} averaged over the seeds (a seed's cell read
    twice counts once: the last file wins)."""
    runs = defaultdict(dict)  # (detector, dataset) -> seed -> row
    for path in paths:
        for row in csv.DictReader(open(path)):
            if row["status"] != "ok" or (seed is not None and int(row["seed"]) != seed):
                continue
            runs[row["detector"], row["dataset"]][row["seed"]] = row
    cells = defaultdict(dict)
    for (detector, dataset), by_seed in runs.items():
        cells[detector][dataset] = {
            key: float(np.mean([float(r[key]) for r in by_seed.values()]))
            for key in ("auroc", "fpr95", "fit_s")
        } | {"n_seeds": len(by_seed)}
    return cells


def table(cells, detectors, labels):
    common = set.intersection(*(set(cells[d]) for d in detectors))
    datasets = sorted(common)
    seeds = sorted({cells[d][s]["n_seeds"] for d in detectors for s in datasets})
    auroc = np.array([[float(cells[d][s]["auroc"]) for s in datasets] for d in detectors])
    ranks = np.vstack([rankdata(-auroc[:, j]) for j in range(len(datasets))]).T
    lines = [
        f"{len(datasets)} datasets on which all {len(detectors)} configurations ran; "
        f"seeds per cell: {seeds} (AUROC, FPR95 and fit seconds are seed means)\n",
        "| configuration | mean AUROC | mean rank | mean FPR95 | median fit s | total fit s |",
        "|---|---|---|---|---|---|",
    ]
    order = np.argsort(ranks.mean(axis=1))
    for i in order:
        d = detectors[i]
        fpr = np.mean([float(cells[d][s]["fpr95"]) for s in datasets])
        fit = np.array([float(cells[d][s]["fit_s"]) for s in datasets])
        lines.append(
            f"| {labels.get(d, d)} | {auroc[i].mean():.4f} | {ranks[i].mean():.2f} | {fpr:.3f} | "
            f"{np.median(fit):.1f} | {fit.sum():.0f} |"
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--detector", action="append", help="a detector spec to compare (repeat)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--label", action="append", default=[], help="SPEC=NAME for the table")
    args = ap.parse_args()
    cells = load(args.results, args.seed)
    detectors = args.detector or sorted(cells)
    labels = dict(item.rsplit("=", 1) for item in args.label)
    print(table(cells, detectors, labels))


if __name__ == "__main__":
    main()
