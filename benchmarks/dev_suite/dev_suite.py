"""The development suite every default is chosen on: three kinds of data, weighted equally.

* ``tables``: the 21 classical ADBench tables in ``../shared/data/adbench`` (7 to 1,555 columns);
* ``features``: the 15 MVTec-AD categories embedded by two ImageNet backbones, ResNet-18 (512-d)
  and ViT (1,000-d): 30 sets of pretrained features;
* ``small``: the bundled small tables (``skood.bench.DEFAULT_BUNDLED``: digits 0 against the
  rest, digits open-set, breast cancer, wine).

Protocol (ADBench's semi-supervised one, as ``skood bench``): 70 % of the normal rows train, the
other normals and every anomaly test; at most 10,000 training and 10,000 test rows (drawn at
random, the test rows stratified); ``Pipeline([InformativeColumns, StandardScaler, detector])``
fitted on the training rows; AUROC of the score. Seeds fix the splits and every detector's
``random_state``. A dataset's figure is its mean over seeds; a group's, the mean over its
datasets; the suite's, the mean of the three groups.

    # run (appends to the CSV as cells finish; rerunning skips finished cells)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dev_suite/dev_suite.py run \\
        --detectors pyod-knn lof flow --csv benchmarks/dev_suite/results.csv --n-jobs 2
    # the tables: per group, group-equal mean, per-seed spread, paired differences
    .venv/bin/python benchmarks/dev_suite/dev_suite.py report --csv benchmarks/dev_suite/results.csv \\
        --reference pyod-knn
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from benchmarks._common import ADBENCH_DIR
from skood.bench import (
    DEFAULT_BUNDLED,
    BenchData,
    load_datasets,
    read_csv,
    run_benchmark,
    write_csv,
)

GROUPS = ("tables", "features", "small")
#: The peers beside skood's detectors: PyOD's KNN, ECOD and GMM, sklearn's LOF, IsolationForest
#: and OneClassSVM, each at its library's defaults (OneClassSVM: nu=0.1, gamma="scale").
PEERS = ("pyod-knn", "lof", "iforest", "pyod-ecod", "pyod-gmm", "ocsvm")
TRAIN_FRACTION, MAX_TRAIN, MAX_TEST = 0.7, 10_000, 10_000


def suite_datasets(groups=GROUPS) -> list[BenchData]:
    """The suite's datasets, each with its group set."""
    out = []
    if "tables" in groups:
        for data in load_datasets(folders=sorted(ADBENCH_DIR.glob("*.npz"))):
            data.group = "tables"
            out.append(data)
    if "features" in groups:
        for backbone in ("mvtec_resnet18", "mvtec_vit"):
            for data in load_datasets(folders=[ADBENCH_DIR / backbone]):
                tag = "resnet18" if "resnet" in backbone else "vit"
                data.name = data.name.replace("MVTec-AD_", f"mvtec-{tag}-")
                data.group = "features"
                out.append(data)
    if "small" in groups:
        for data in load_datasets(names=DEFAULT_BUNDLED):
            data.group = "small"
            out.append(data)
    return out


def run(args) -> None:
    csv_path = Path(args.csv)
    previous = read_csv(csv_path) if csv_path.exists() else []
    datasets = suite_datasets(args.groups)
    if args.datasets:
        datasets = [d for d in datasets if any(p in d.name for p in args.datasets)]

    def append(row):
        write_csv([row], csv_path, append=True)

    run_benchmark(
        args.detectors,
        datasets,
        seeds=args.seeds,
        protocols=[args.protocol],
        train_fraction=TRAIN_FRACTION,
        max_train=MAX_TRAIN,
        max_test=MAX_TEST,
        n_jobs=args.n_jobs,
        progress=not args.quiet,
        on_row=append,
        previous=previous,
    )


# -- report ---------------------------------------------------------------------------------------


def tables(rows, detectors=None, seeds=None, protocol="semi"):
    """Per-(detector, group, dataset) seed means, and the per-seed group means.

    Returns ``(means, per_seed)``: ``means[det][group]`` is the group's mean over datasets of
    the seed-mean AUROC; ``per_seed[det][seed][group]`` the group mean on that seed alone. Only
    datasets where every listed detector has every seed are counted, so that all are compared
    on the same cells.
    """
    rows = [r for r in rows if r["status"] == "ok" and r["protocol"] == protocol]
    if seeds is not None:
        rows = [r for r in rows if int(r["seed"]) in seeds]
    detectors = detectors or list(dict.fromkeys(r["detector"] for r in rows))
    cell = {(r["detector"], r["dataset"], int(r["seed"])): r for r in rows}
    group_of = {r["dataset"]: r["group"] for r in rows}
    all_seeds = sorted({int(r["seed"]) for r in rows})
    complete = [
        d
        for d in dict.fromkeys(r["dataset"] for r in rows)
        if all((det, d, s) in cell for det in detectors for s in all_seeds)
    ]
    means, per_seed, per_set = {}, {}, {}
    for det in detectors:
        per_set[det] = {
            d: np.mean([cell[det, d, s]["auroc"] for s in all_seeds]) for d in complete
        }
        means[det] = {
            g: np.mean([v for d, v in per_set[det].items() if group_of[d] == g])
            for g in GROUPS
            if any(group_of[d] == g for d in complete)
        }
        per_seed[det] = {
            s: {
                g: np.mean([cell[det, d, s]["auroc"] for d in complete if group_of[d] == g])
                for g in means[det]
            }
            for s in all_seeds
        }
    fit = {
        det: {
            g: np.median([cell[det, d, s]["fit_s"] for d in complete for s in all_seeds
                          if group_of[d] == g])
            for g in means[det]
        }
        for det in detectors
    }
    return means, per_seed, per_set, fit, complete, all_seeds, group_of


def report(args) -> str:
    rows = []
    for item in args.csv.split(","):
        path, _, tag = item.partition("@")  # "before.csv@a655ec3": its detectors are tagged
        for r in read_csv(path):
            if tag:
                r["detector"] = f"{r['detector']} @{tag}"
            rows.append(r)
    detectors = args.detectors or list(dict.fromkeys(r["detector"] for r in rows))
    means, per_seed, per_set, fit, complete, seeds, group_of = tables(
        rows, detectors, seeds=args.seeds, protocol=args.protocol
    )
    groups = list(next(iter(means.values())))
    counts = {g: sum(group_of[d] == g for d in complete) for g in groups}
    ref = args.reference or max(
        (d for d in detectors if d in PEERS), key=lambda d: np.mean(list(means[d].values())),
        default=None,
    )

    def equal(det, seed=None):
        m = means[det] if seed is None else per_seed[det][seed]
        return float(np.mean([m[g] for g in groups]))

    lines = [
        f"Mean AUROC (%) over {len(seeds)} seeds ({', '.join(map(str, seeds))}); "
        + ", ".join(f"{g}: {counts[g]} sets" for g in groups)
        + f". Paired differences against `{ref}`: the group-equal mean on each seed, then their "
        "mean and range; 'sets won' counts datasets (seed means) where the detector is ahead.",
        "",
        "| detector | " + " | ".join(groups) + " | group-equal mean | ± seeds | "
        + f"Δ vs {ref} (min..max over seeds) | sets won / lost | median fit s (per group) |",
        "|---" * (len(groups) + 6) + "|",
    ]
    order = sorted(detectors, key=lambda d: -equal(d))
    for det in order:
        spread = np.std([equal(det, s) for s in seeds])
        diffs = [equal(det, s) - equal(ref, s) for s in seeds] if ref else [np.nan]
        won = sum(per_set[det][d] > per_set[ref][d] + 1e-12 for d in complete) if ref else 0
        lost = sum(per_set[det][d] < per_set[ref][d] - 1e-12 for d in complete) if ref else 0
        lines.append(
            f"| {det} | "
            + " | ".join(f"{100 * means[det][g]:.1f}" for g in groups)
            + f" | **{100 * equal(det):.2f}** | {100 * spread:.2f} | "
            + (
                f"{100 * np.mean(diffs):+.2f} ({100 * min(diffs):+.2f}..{100 * max(diffs):+.2f})"
                if det != ref
                else "–"
            )
            + (f" | {won} / {lost}" if det != ref else " | –")
            + " | "
            + " / ".join(f"{fit[det][g]:.2f}" for g in groups)
            + " |"
        )
    text = "\n".join(lines) + "\n"
    if args.per_dataset:
        text += "\n| dataset | group | " + " | ".join(order) + " |\n"
        text += "|---" * (len(order) + 2) + "|\n"
        for d in complete:
            text += f"| {d} | {group_of[d]} | " + " | ".join(
                f"{100 * per_set[det][d]:.1f}" for det in order
            ) + " |\n"
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run (or resume) cells, appending to --csv")
    p_run.add_argument("--detectors", nargs="+", required=True, help="skood bench detector specs")
    p_run.add_argument("--csv", required=True)
    p_run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p_run.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS))
    p_run.add_argument("--datasets", nargs="+", help="only datasets whose name contains one")
    p_run.add_argument("--n-jobs", type=int, default=1)
    p_run.add_argument(
        "--protocol", choices=["semi", "unsup"], default="semi",
        help="semi: train on 70 %% of the normal rows (the suite); unsup: train on every row, "
        "anomalies included, and score the same rows (ADBench's unsupervised setting)",
    )
    p_run.add_argument("--quiet", action="store_true")
    p_rep = sub.add_parser("report", help="print the markdown tables from --csv")
    p_rep.add_argument(
        "--csv",
        required=True,
        help="one CSV, or several separated by commas; CSV@TAG appends ' @TAG' to its detectors",
    )
    p_rep.add_argument("--detectors", nargs="+")
    p_rep.add_argument("--reference", help="the detector the paired differences are against")
    p_rep.add_argument("--seeds", type=int, nargs="+")
    p_rep.add_argument("--per-dataset", action="store_true")
    p_rep.add_argument("--protocol", choices=["semi", "unsup"], default="semi")
    args = parser.parse_args(argv)
    if args.command == "run":
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        run(args)
    else:
        print(report(args), end="")


if __name__ == "__main__":
    main()
