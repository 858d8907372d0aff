"""Constant columns: QuantileFlowDetector's own rule against the column-dropping workarounds.

Issue 16. On every ``skood bench`` dataset (bundled + ADBench tabular + MVTec ResNet-18 features),
the same flow is fitted behind three preprocessings, on the same semi-supervised split:

* ``rule``: ``StandardScaler -> flow``. Columns constant on the flow's training rows stay in and
  are modelled as narrow Gaussians (``constant_scale``); the flow sees the others.
* ``variance_threshold``: ``VarianceThreshold -> StandardScaler -> flow``, the workaround the old
  error message advised. It drops columns constant on all the inlier rows it is fitted on; the
  flow then holds out 20 % of them, so a column can still be constant on its training rows (the
  old flow raised there; the rule now handles it inside).
* ``informative``: ``InformativeColumns -> StandardScaler -> flow``, ``skood bench``'s own
  preprocessing (drops columns with fewer than 5 rows off the mode).

Usage (from the repo root; two processes, one per core):
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/constant_columns/constant_columns.py run --part 0/2 --out benchmarks/constant_columns/constant_columns.csv
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/constant_columns/constant_columns.py run --part 1/2 --out benchmarks/constant_columns/constant_columns_part1.csv
  .venv/bin/python benchmarks/constant_columns/constant_columns.py report --merge benchmarks/constant_columns/constant_columns.csv benchmarks/constant_columns/constant_columns_part1.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from sklearn.feature_selection import VarianceThreshold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skood import QuantileFlowDetector
from skood.base import constant_columns
from skood.bench import bundled_datasets, load_datasets, split
from skood.metrics import auroc
from skood.registry import InformativeColumns

torch.set_num_threads(1)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root
from benchmarks._common import ADBENCH_DIR as DATA

# A CPU-sized flow (the paper's 8 x 512 x 2 takes minutes per fit on these sets).
FLOW = dict(n_blocks=2, hidden_sizes=(64, 64), lr=1e-3, min_steps=500)
VARIANTS = ("rule", "variance_threshold", "informative")


def pipeline(variant: str, seed: int):
    flow = QuantileFlowDetector(0.05, random_state=seed, device="cpu", **FLOW)
    pre = {
        "rule": [],
        "variance_threshold": [VarianceThreshold()],
        "informative": [InformativeColumns()],
    }[variant]
    return make_pipeline(*pre, StandardScaler(), flow)


def run(args):
    datasets = load_datasets(bundled_datasets(), [DATA])
    part, parts = map(int, args.part.split("/"))
    datasets = datasets[part::parts]
    done = set()
    if Path(args.out).exists():
        with open(args.out) as f:
            done = {(r["dataset"], r["variant"], r["seed"]) for r in csv.DictReader(f)}
    fields = [
        "dataset",
        "group",
        "seed",
        "variant",
        "status",
        "auroc",
        "fit_s",
        "n_features",
        "n_constant_train",
        "n_pinned",
        "error",
    ]
    new = not Path(args.out).exists()
    with open(args.out, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        for data in datasets:
            for seed in args.seeds:
                X_tr, y_tr, X_te, y_te = split(data, "semi", seed, max_train=args.max_train)
                for variant in VARIANTS:
                    if (data.name, variant, str(seed)) in done:
                        continue
                    row = dict(
                        dataset=data.name,
                        group=data.group,
                        seed=seed,
                        variant=variant,
                        n_features=X_tr.shape[1],
                        n_constant_train=constant_columns(X_tr).size,
                    )
                    start = time.perf_counter()
                    try:
                        pipe = pipeline(variant, seed).fit(X_tr)
                        row["fit_s"] = round(time.perf_counter() - start, 2)
                        row["auroc"] = auroc(y_te, pipe.score_samples(X_te))
                        row["n_pinned"] = pipe[-1].constant_columns_.size
                        row["status"] = "ok"
                    except Exception as exc:  # record and go on
                        row["status"] = "error"
                        row["error"] = f"{type(exc).__name__}: {exc}"[:200]
                    writer.writerow(row)
                    f.flush()
                    print(
                        f"{data.name:28s} seed={seed} {variant:18s} {row.get('auroc', row.get('error'))}",
                        flush=True,
                    )


def report(args):
    rows = []
    for path in args.merge or [args.out]:
        with open(path) as f:
            rows += list(csv.DictReader(f))
    by = {}
    for r in rows:
        by.setdefault((r["dataset"], r["seed"]), {})[r["variant"]] = r
    print(
        "| dataset | seed | features | constant on train | pinned (rule) | rule | VarianceThreshold | InformativeColumns |"
    )
    print("|---|---|---|---|---|---|---|---|")
    means = {v: [] for v in VARIANTS}
    complete = 0
    for (name, seed), cells in by.items():

        def cell(v, cells=cells):
            c = cells.get(v)
            if c is None:
                return "—"
            return f"{float(c['auroc']):.4f}" if c["status"] == "ok" else "error"

        first = next(iter(cells.values()))
        pinned = cells.get("rule", {}).get("n_pinned", "")
        print(
            f"| {name} | {seed} | {first['n_features']} | {first['n_constant_train']} | {pinned} | "
            + " | ".join(cell(v) for v in VARIANTS)
            + " |"
        )
        if all(cells.get(v, {}).get("status") == "ok" for v in VARIANTS):
            complete += 1
            for v in VARIANTS:
                means[v].append(float(cells[v]["auroc"]))
    print(f"\nmean AUROC over the {complete} (dataset, seed) cells where all three ran:")
    for v in VARIANTS:
        print(f"- {v}: {np.mean(means[v]):.4f}")
    errors = [r for r in rows if r["status"] != "ok"]
    print(f"\ncells that failed: {len(errors)}")
    for r in errors:
        print(f"- {r['dataset']} seed={r['seed']} {r['variant']}: {r['error']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["run", "report"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--max-train", type=int, default=2000)
    ap.add_argument("--out", default=str(HERE / "constant_columns.csv"))
    ap.add_argument("--part", default="0/1", help="run datasets[i::n] of the list, as i/n")
    ap.add_argument("--merge", nargs="+", help="report: the CSVs of several parts")
    args = ap.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
