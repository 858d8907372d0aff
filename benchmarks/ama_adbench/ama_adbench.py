"""AMADetector on the shared ADBench sets, side by side with the peers of adbench_side_by_side.py.

Same splits as ``adbench_side_by_side.py`` (``prepare`` of ``benchmarks/_common/adbench.py``: 50 %
of the normals to train, the rest plus every anomaly to test, informative columns, StandardScaler
fitted on train), seed 0, so the peers' AUROCs in ``adbench_results.csv`` are on exactly the rows
AMA sees. One AMA fit per
(dataset, seed) gives the three scores A, R and pixel (feature) L1 ``recon``.

Budget: AMA is a WGAN-GP with five critic steps per encoder/decoder step, so a fixed number of
epochs would cost 40x more on a 5000-row set than on a 100-row one. Every fit gets the same number
of encoder/decoder steps instead (``STEPS``, batch 64): max_epochs = ceil(STEPS / batches per
epoch), at least 20. AMADetector's warm-up and lr schedule are fractions of max_epochs, so they
scale with it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ama_adbench/ama_adbench.py run [budget_seconds]
    .venv/bin/python benchmarks/ama_adbench/ama_adbench.py report

Rows are appended to benchmarks/ama_adbench/ama_adbench.csv as fits finish (a rerun skips finished ones);
benchmarks/ama_adbench/ama_adbench.md is written from it and adbench_results.csv.
"""

import copy
import csv
import math
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root
from benchmarks._common.adbench import PEER_CSV, prepare, tasks
from skood.ama import AMADetector
from skood.metrics import auroc

CSV = HERE / "ama_adbench.csv"
MD = HERE / "ama_adbench.md"
STEPS, BATCH = 600, 64
SCORES = ("A", "R", "recon")
FIELDS = [
    "group",
    "dataset",
    "seed",
    "score",
    "auroc",
    "n_train",
    "n_test",
    "n_features",
    "max_epochs",
    "fit_s",
    "score_s",
    "error",
]
PEERS = [
    "GaussMaha-LW",
    "IForest",
    "LOF",
    "OCSVM",
    "PyOD-KNN",
    "PyOD-ECOD",
    "PyOD-AutoEncoder",
    "PyOD-DeepSVDD",
    "QuantFlow-q0.05",
]


def max_epochs_for(n_train):
    return max(20, math.ceil(STEPS / math.ceil(n_train / BATCH)))


def _done():
    if not CSV.exists():
        return set()
    with open(CSV) as f:
        return {(r["dataset"], r["seed"]) for r in csv.DictReader(f)}


def run(budget):
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    done = _done()
    if not CSV.exists():
        with open(CSV, "w", newline="") as f:
            csv.writer(f).writerow(FIELDS)
    t0 = time.time()
    for group, name, path, seed in tasks():
        if seed != 0 or (name, str(seed)) in done:
            continue
        if time.time() - t0 > budget:
            print("budget reached; stopping", flush=True)
            break
        Xtr, Xte, yte = prepare(path, seed)
        Xtr, Xte = Xtr.astype(np.float32), Xte.astype(np.float32)
        epochs = max_epochs_for(len(Xtr))
        base = [group, name, seed]
        shape = [len(Xtr), len(Xte), Xtr.shape[1], epochs]
        rows = []
        try:
            model = AMADetector(batch_size=BATCH, max_epochs=epochs, random_state=seed)
            t = time.perf_counter()
            model.fit(Xtr)
            fit_s = time.perf_counter() - t
            for s in SCORES:
                scorer = copy.deepcopy(model).set_params(ood_score=s)
                t = time.perf_counter()
                sc = scorer.score_samples(Xte)
                score_s = time.perf_counter() - t
                rows.append(
                    base
                    + [s, f"{auroc(yte, sc):.6f}"]
                    + shape
                    + [f"{fit_s:.2f}", f"{score_s:.3f}", ""]
                )
        except Exception as exc:  # recorded, never fatal
            rows = [base + ["", ""] + shape + ["", "", f"{type(exc).__name__}: {exc}"[:300]]]
        with open(CSV, "a", newline="") as f:
            csv.writer(f).writerows(rows)
        print(
            f"[{time.time() - t0:6.0f}s] {name} n={len(Xtr)} d={Xtr.shape[1]} ep={epochs} "
            + " ".join(f"{r[3]}={r[4][:5]}" for r in rows)
            + f" fit={rows[0][-3]}s",
            flush=True,
        )


def _read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def report():
    ama = [r for r in _read(CSV) if r["auroc"]]
    peers = {
        (r["dataset"], r["seed"], r["detector"]): r for r in _read(PEER_CSV) if r["status"] == "ok"
    }
    keys = sorted(
        {(r["group"], r["dataset"], r["seed"]) for r in ama}, key=lambda k: (k[0] != "mvtec", k[1])
    )
    got = {(r["dataset"], r["seed"], r["score"]): r for r in ama}
    cols = [f"AMA-{s}" for s in SCORES] + PEERS
    table, fits = [], {}
    for g, d, s in keys:
        vals = [float(got[(d, s, sc)]["auroc"]) for sc in SCORES]
        vals += [
            float(peers[(d, s, p)]["auroc"]) if (d, s, p) in peers else float("nan") for p in PEERS
        ]
        table.append((g, d, vals))
        fits.setdefault(g, []).append(float(got[(d, s, "A")]["fit_s"]))
    lines = [
        "# AMADetector on the shared ADBench sets",
        "",
        "Written by `benchmarks/ama_adbench/ama_adbench.py report` from `ama_adbench.csv` (AMA) and",
        "`adbench_results.csv` (peers; same `prepare` split, seed 0). AUROC, higher is better;",
        f"AMA: defaults except batch {BATCH} and {STEPS} encoder/decoder steps per fit "
        "(max_epochs = ceil(steps / batches per epoch), at least 20). One fit gives A, R and recon.",
        "",
        "| group | dataset | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for g, d, vals in table:
        best = np.nanmax(vals)
        cells = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in vals]
        lines.append(f"| {g} | {d} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Summary per group (mean AUROC; mean rank among the columns, 1 = best)",
        "",
        "| group | n sets | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for g in ("mvtec", "tabular"):
        # only sets where every peer has a row (1_ALOI, 33_skin, 11_donors have none at seed 0)
        rows = np.array([v for gg, _, v in table if gg == g and not np.isnan(v).any()])
        if not len(rows):
            continue
        ranks = np.array([(-np.nan_to_num(r, nan=-1)).argsort().argsort() + 1 for r in rows])
        lines.append(
            f"| {g} mean | {len(rows)} | "
            + " | ".join(f"{m:.3f}" for m in np.nanmean(rows, 0))
            + " |"
        )
        lines.append(
            f"| {g} rank | {len(rows)} | " + " | ".join(f"{m:.1f}" for m in ranks.mean(0)) + " |"
        )
    lines += [
        "",
        "AMA fit time (s, one core): "
        + "; ".join(
            f"{g} median {np.median(v):.0f} (max {np.max(v):.0f})" for g, v in fits.items()
        ),
        "",
    ]
    errors = [r for r in _read(CSV) if r["error"]]
    if errors:
        lines += ["Failed fits:", ""] + [f"- {r['dataset']}: {r['error']}" for r in errors] + [""]
    MD.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] in ([], ["-h"], ["--help"]):  # run or report: say which
        print(__doc__)
        sys.exit()
    if sys.argv[1] == "run":
        run(float(sys.argv[2]) if len(sys.argv) > 2 else float("inf"))
    else:
        report()
