"""Side-by-side benchmark of skood detectors and sklearn / PyOD peers on the shared ADBench sets.

Semi-supervised (novelty) protocol: train = 50% of the normals, test = the other normals + all
anomalies; the informative columns (``benchmarks/_common/adbench.py``) + StandardScaler fitted on
the train rows, for every detector. Rows are appended to adbench_results.csv (beside this script)
as they finish (re-running skips finished (dataset, seed) pairs); adbench_side_by_side.md is
written from the CSV.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adbench_side_by_side/adbench_side_by_side.py run <budget_seconds>
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adbench_side_by_side/adbench_side_by_side.py report
"""

import os
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"
import csv
import datetime
import platform
import sys
import time
import warnings

import numpy as np
import torch

torch.set_num_threads(1)
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import OneClassSVM

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common.adbench import PEER_CSV as CSV
from benchmarks._common.adbench import TEST_CAP, TRAIN_CAP, prepare, tasks
from skood.flow import QuantileFlowDetector
from skood.gaussian import GaussianMahalanobis
from skood.metrics import aupr_out, auroc, fpr_at_tpr

warnings.filterwarnings("ignore")
MD = Path(__file__).resolve().parent / "adbench_side_by_side.md"
MVTEC_SEEDS, TAB_SEEDS = [0, 1, 2], [0, 1]
FIELDS = [
    "group",
    "dataset",
    "seed",
    "detector",
    "n_train",
    "n_test",
    "n_features",
    "status",
    "auroc",
    "aupr_out",
    "fpr95",
    "fit_s",
    "score_s",
    "error",
]


def deep_svdd_epochs(n_train):
    return 100 if n_train <= 1000 else 20


def make_detectors(seed, n_features, n_train):
    """name -> (factory, sign): scores = sign * (score_samples or decision_function)."""
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.deep_svdd import DeepSVDD
    from pyod.models.ecod import ECOD
    from pyod.models.knn import KNN

    flow = dict(n_blocks=4, hidden_sizes=(128, 128), random_state=seed)
    return {
        "GaussMaha-LW": lambda: GaussianMahalanobis(covariance="ledoit_wolf"),
        "GaussMaha-emp": lambda: GaussianMahalanobis(),
        "IForest": lambda: IsolationForest(random_state=seed),
        "LOF": lambda: LocalOutlierFactor(novelty=True),
        "OCSVM": lambda: OneClassSVM(gamma="scale", nu=0.1),
        "PyOD-KNN": lambda: KNN(),
        "PyOD-ECOD": lambda: ECOD(),
        "PyOD-AutoEncoder": lambda: AutoEncoder(random_state=seed, verbose=0),
        "PyOD-DeepSVDD": lambda: DeepSVDD(
            n_features=n_features, random_state=seed, verbose=0, epochs=deep_svdd_epochs(n_train)
        ),
        "QuantFlow-q0.05": lambda: QuantileFlowDetector(**flow),
        "QuantFlow-mean": lambda: QuantileFlowDetector(q="mean", **flow),
    }


PYOD = {"PyOD-KNN", "PyOD-ECOD", "PyOD-AutoEncoder", "PyOD-DeepSVDD"}


def run(budget):
    done = set()
    if CSV.exists():
        with open(CSV) as f:
            done = {(r["dataset"], r["seed"]) for r in csv.DictReader(f)}
    else:
        with open(CSV, "w", newline="") as f:
            csv.writer(f).writerow(FIELDS)
    t0 = time.time()
    for group, name, path, seed in tasks():
        if (name, str(seed)) in done:
            continue
        if time.time() - t0 > budget:
            print("budget reached; stopping", flush=True)
            break
        Xtr, Xte, yte = prepare(path, seed)
        dets = make_detectors(seed, Xtr.shape[1], Xtr.shape[0])
        rows = []
        for dname, factory in dets.items():
            base = [group, name, seed, dname, Xtr.shape[0], Xte.shape[0], Xtr.shape[1]]
            try:
                torch.manual_seed(seed)
                np.random.seed(seed)
                det = factory()
                t = time.perf_counter()
                det.fit(Xtr.astype(np.float32) if dname.startswith("QuantFlow") else Xtr)
                fit_s = time.perf_counter() - t
                t = time.perf_counter()
                if dname in PYOD:
                    s = -np.asarray(det.decision_function(Xte), dtype=float)
                else:
                    s = np.asarray(
                        det.score_samples(
                            Xte.astype(np.float32) if dname.startswith("QuantFlow") else Xte
                        ),
                        dtype=float,
                    )
                score_s = time.perf_counter() - t
                if not np.all(np.isfinite(s)):
                    raise ValueError(f"{np.sum(~np.isfinite(s))} non-finite scores")
                rows.append(
                    base
                    + [
                        "ok",
                        f"{auroc(yte, s):.6f}",
                        f"{aupr_out(yte, s):.6f}",
                        f"{fpr_at_tpr(yte, s, 0.95):.6f}",
                        f"{fit_s:.3f}",
                        f"{score_s:.3f}",
                        "",
                    ]
                )
            except Exception as exc:
                rows.append(base + ["fail", "", "", "", "", "", repr(exc)[:300].replace("\n", " ")])
            with open(CSV, "a", newline="") as f:
                csv.writer(f).writerow(rows[-1])
        print(
            f"{time.time() - t0:7.0f}s {name} seed={seed} "
            + " ".join(f"{r[3]}={r[8][:5] or 'FAIL'}({r[11][:5]}s)" for r in rows),
            flush=True,
        )


if __name__ == "__main__":
    if sys.argv[1:2] in ([], ["-h"], ["--help"]):  # run or report: say which
        print(__doc__)
        sys.exit()
    if sys.argv[1] == "run":
        t0 = time.time()
        run(float(sys.argv[2]))
        print(f"wall {time.time() - t0:.0f}s", flush=True)
    else:
        from adbench_report import write_report

        wall = (
            sys.argv[2]
            if len(sys.argv) > 2
            else "see benchmarks/adbench_side_by_side/adbench_run.log"
        )
        import pyod
        import sklearn

        head = [
            "# ADBench side by side: skood detectors vs sklearn / PyOD\n",
            f"- Date: {datetime.date.today().isoformat()}. Machine: {platform.machine()} Linux, 2 CPU cores "
            "shared with other work, one Python process, `torch.set_num_threads(1)`, `OMP_NUM_THREADS=1`; "
            f"torch {torch.__version__} (CPU), scikit-learn {sklearn.__version__}, PyOD {pyod.__version__}.",
            "- Command (repo root): `OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/adbench_side_by_side/adbench_side_by_side.py "
            "run <budget_s> > benchmarks/adbench_side_by_side/adbench_run.log 2>&1 &`, then `.venv/bin/python "
            "benchmarks/adbench_side_by_side/adbench_side_by_side.py report '<wall>'` for this file. The run appends to "
            "`benchmarks/adbench_side_by_side/adbench_results.csv` and skips (dataset, seed) pairs already there; the budget is the "
            "time after which no new (dataset, seed) pair is started. Order: MVTec seed 0, tabular seed 0 (smallest sets first), "
            f"MVTec seeds 1 and 2, tabular seed 1. Wall-clock time: {wall}.",
            "- Protocol: ADBench semi-supervised split (`skood.datasets.novelty_split`, train_fraction=0.5: "
            "train = half the normals, test = the other normals + all anomalies). Big sets: train rows capped "
            f"at {TRAIN_CAP:,} (random subsample with the seed), test rows at {TEST_CAP:,} (stratified random "
            "subsample with the seed, so the anomaly fraction is kept). Same split for every detector. "
            "Preprocessing for every detector, fitted on the train rows: drop columns where fewer than 5 train "
            "rows differ from the column's most frequent value (the MVTec ResNet-18 features have many "
            "all-zero / almost-all-zero columns that the flow refuses; see the note at the end), then "
            "`StandardScaler`. Scores oriented higher = more normal (sklearn `score_samples`, skood "
            "`score_samples`, minus PyOD `decision_function`); AUROC, AUPR-out and FPR at 95% TPR from "
            "`skood.metrics`.",
            "- Detectors: skood `QuantileFlowDetector(n_blocks=4, hidden_sizes=(128, 128), "
            "random_state=seed)` (q=0.05, max_epochs=50, min_steps=1000, all else default; CPU-sized: the "
            'default 8x512x2 flow costs ~0.25 s per step on this CPU) and the same with `q="mean"`; '
            '`GaussianMahalanobis(covariance="ledoit_wolf")` (GaussMaha-LW) and `GaussianMahalanobis()` '
            "(empirical covariance, GaussMaha-emp); sklearn `IsolationForest(random_state=seed)`, "
            '`LocalOutlierFactor(novelty=True)`, `OneClassSVM(gamma="scale", nu=0.1)`; PyOD `KNN()`, '
            "`ECOD()`, `AutoEncoder(random_state=seed, verbose=0)` (defaults: epoch_num=10, batch 32, "
            "hidden [64, 32]), `DeepSVDD(n_features=d, random_state=seed, verbose=0, epochs=E)` with E = 100 "
            "(the default) when the train set has <= 1,000 rows, else 20 (to keep a fit under ~60 s). "
            "`torch.manual_seed(seed)` and `np.random.seed(seed)` before every fit.\n",
        ]
        print(write_report(CSV, MD, head))
