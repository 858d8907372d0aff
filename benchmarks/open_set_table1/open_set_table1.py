"""QuantOD's Table 1 at CPU scale: OpenSetClassifier gates (MSP, energy, Mahalanobis, GEM, flow).

The paper's Table 1 is on CIFAR-10 / WRN-40-2 (FPR95 / AUROC / AUPR / time per gate). Here every
gate is an ``OpenSetClassifier`` around the SAME stage-1 classifier (same ``ClassifierFeatures``
random_state, same held-out split), so only the gate differs.

Settings:
  (A) "digits": sklearn digits / 16, a 6-of-10 class split (0-5 vs 6-9, plus random splits drawn
      with ``--split-seeds``); per seed a stratified 70/30 split of the inlier rows; test = the 30 %
      plus every outlier-class row. Stage 1: ClassifierFeatures(image_shape=(1, 8, 8)) (SmallCNN).
  (B) "mvtec": ADBench MVTec-AD ResNet-18 features (512-d); the 15 categories are the classes,
      normal rows are inliers (labelled by category), anomalous rows of every category are the
      outliers. Stratified 70/30 split of the normal rows; X standardised on the training rows.
      Stage 1: ClassifierFeatures() (MLP).

Gates: "msp", "energy"; class-conditional GaussianMahalanobis with aggregate="max" (Mahalanobis)
and "logsumexp" (GEM); VarianceThreshold -> StandardScaler -> QuantileFlowDetector with q=0.05 and
q="mean" (lr 1e-3, see quantile_claim.md); optionally the flow at its defaults, the paper's settings ("flow_spec").

Usage (from the repo root):
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/open_set_table1/open_set_table1.py \
      --settings digits mvtec --seeds 0 1 2 --out benchmarks/open_set_table1/open_set_table1.csv
  .venv/bin/python benchmarks/open_set_table1/open_set_table1.py --summarize-only --out benchmarks/open_set_table1/open_set_table1.csv
Writes the CSV (one row per setting x split x seed x gate) after every run and prints the tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import csv
from collections import defaultdict

import numpy as np
import torch
from sklearn.feature_selection import VarianceThreshold
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skood import ClassifierFeatures, GaussianMahalanobis, OpenSetClassifier, QuantileFlowDetector
from skood.datasets import list_adbench, load_adbench, load_digits_ood
from skood.metrics import aupr_in, aupr_out, auroc, fpr_at_tpr

torch.set_num_threads(1)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root
from benchmarks._common import ADBENCH_DIR

MVTEC_DIR = ADBENCH_DIR / "mvtec_resnet18"

ALL_GATES = [
    "msp",
    "energy",
    "mahalanobis",
    "gem",
    "flow_q0.05",
    "flow_mean",
    "flow_spec",
    "flow_q0.05_scaler",
    "flow_q0.05_raw",
]
METRICS = [
    "auroc",
    "fpr95",
    "aupr_in",
    "aupr_out",
    "closed_acc",
    "accepted_acc",
    "tpr_test",
    "added_ms_per_1k",
    "fit_s",
]


# -- data ------------------------------------------------------------------------------------
def digits_splits(n_splits, split_seeds):
    """Inlier-class sets: 0-5 first, then a random 6-of-10 draw per split seed."""
    splits = [("0-5", tuple(range(6)))]
    for s in split_seeds[: n_splits - 1]:
        classes = tuple(sorted(np.random.default_rng(s).choice(10, 6, replace=False).tolist()))
        splits.append((f"rand{s}:" + "".join(map(str, classes)), classes))
    return splits


def digits_data(inlier_classes, seed):
    X, y = load_digits_ood(inlier_classes)
    X = X / 16.0
    inl = np.flatnonzero(y != -1)
    tr, te = train_test_split(inl, test_size=0.3, stratify=y[inl], random_state=seed)
    test = np.concatenate([te, np.flatnonzero(y == -1)])
    return X[tr], y[tr], X[test], y[test]


def mvtec_data(seed):
    Xs, ys = [], []
    for k, path in enumerate(list_adbench(MVTEC_DIR)):
        X, y = load_adbench(path)  # +1 normal, -1 anomaly
        Xs.append(X)
        ys.append(np.where(y == -1, -1, k))
    X, y = np.concatenate(Xs), np.concatenate(ys)
    inl = np.flatnonzero(y != -1)
    tr, te = train_test_split(inl, test_size=0.3, stratify=y[inl], random_state=seed)
    test = np.concatenate([te, np.flatnonzero(y == -1)])
    scaler = StandardScaler().fit(X[tr])
    return scaler.transform(X[tr]), y[tr], scaler.transform(X[test]), y[test]


# -- gates -----------------------------------------------------------------------------------
def make_gate(name, seed, flow_epochs):
    def flow(q, **kw):
        return make_pipeline(
            VarianceThreshold(), StandardScaler(), QuantileFlowDetector(q, random_state=seed, **kw)
        )

    small = dict(
        n_blocks=4,
        hidden_sizes=(128, 128),
        lr=1e-3,
        max_epochs=flow_epochs,
        min_steps=0,
        batch_size=64,
        validation_fraction=0.0,
        device="cpu",
    )
    if name in ("msp", "energy"):
        return name
    if name == "mahalanobis":
        return GaussianMahalanobis(class_conditional=True, aggregate="max", offset_cv=None)
    if name == "gem":
        return GaussianMahalanobis(class_conditional=True, aggregate="logsumexp", offset_cv=None)
    if name == "flow_q0.05":
        return flow(0.05, **small)
    if name == "flow_mean":
        return flow("mean", **small)
    if name == "flow_spec":  # the paper's settings (QuantileFlowDetector.paper)
        return flow(0.05, device="cpu", **QuantileFlowDetector.PAPER_PARAMS)
    # Constant (dead-unit) columns left to the flow's own rule instead of VarianceThreshold:
    if name == "flow_q0.05_scaler":
        return make_pipeline(
            StandardScaler(), QuantileFlowDetector(0.05, random_state=seed, **small)
        )
    if name == "flow_q0.05_raw":  # no preprocessing at all
        return QuantileFlowDetector(0.05, random_state=seed, **small)
    raise ValueError(name)


def median_time(fn, X, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(X)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def evaluate(clf, X_test, y_test, repeats):
    scores = clf.score_samples(X_test)
    is_in = y_test != -1
    closed = clf.predict_closed_set(X_test)
    pred = clf.predict(X_test)
    accepted = is_in & (pred != -1)
    # interleave the two timings so that load on the shared machine hits both alike
    t_gate, t_feat = [], []
    for _ in range(repeats):
        t_gate.append(median_time(clf.score_samples, X_test, 1))
        t_feat.append(median_time(clf.features_.transform_with_logits, X_test, 1))
    added = (np.median(t_gate) - np.median(t_feat)) / X_test.shape[0] * 1e6  # ms per 1k rows
    row = {
        "auroc": auroc(y_test, scores),
        "fpr95": fpr_at_tpr(y_test, scores, 0.95),
        "aupr_in": aupr_in(y_test, scores),
        "aupr_out": aupr_out(y_test, scores),
        "closed_acc": float(np.mean(closed[is_in] == y_test[is_in])),
        "accepted_acc": float(np.mean(pred[accepted] == y_test[accepted])),
        "tpr_test": float(accepted.sum() / is_in.sum()),
        "added_ms_per_1k": float(added),
        "features_ms_per_1k": float(np.median(t_feat) / X_test.shape[0] * 1e6),
    }
    return row, closed


def run_one(setting, split, seed, data, gates, args, log):
    X_tr, y_tr, X_te, y_te = data
    rows, reference = [], None
    for gate in gates:
        # --features pre: the penultimate Linear's output, before its ReLU (a forward hook);
        # post: after it (pre_activation=False, the QuantOD paper's features)
        if setting == "digits":
            layer = "fc.1" if args.features == "pre" else None
            feats = ClassifierFeatures(
                image_shape=(1, 8, 8),
                max_epochs=args.cnn_epochs,
                random_state=seed,
                device="cpu",
                layer=layer,
                pre_activation=False,
            )
            epochs = args.flow_epochs_digits
        else:
            layer = "body.0" if args.features == "pre" else None
            feats = ClassifierFeatures(
                max_epochs=args.mlp_epochs,
                random_state=seed,
                device="cpu",
                layer=layer,
                pre_activation=False,
            )
            epochs = args.flow_epochs_mvtec
        clf = OpenSetClassifier(feats, make_gate(gate, seed, epochs), random_state=seed)
        t0 = time.perf_counter()
        clf.fit(X_tr, y_tr)
        fit_s = time.perf_counter() - t0
        row, closed = evaluate(clf, X_te, y_te, args.repeats)
        if reference is None:
            reference = closed
        det = clf.detector_
        flow = det[-1] if hasattr(det, "steps") else None
        row.update(
            setting=setting,
            split=split,
            seed=seed,
            gate=gate,
            features=args.features,
            fit_s=fit_s,
            same_classifier=bool(np.array_equal(closed, reference)),
            n_train=X_tr.shape[0],
            n_test_in=int((y_te != -1).sum()),
            n_test_out=int((y_te == -1).sum()),
            flow_epochs=getattr(flow, "n_epochs_", ""),
            flow_features=getattr(flow, "n_features_in_", ""),
            threshold=clf.offset_,
        )
        rows.append(row)
        log(
            f"{setting} {split} seed={seed} {gate:12s} AUROC={row['auroc']:.4f} "
            f"FPR95={row['fpr95']:.4f} closed={row['closed_acc']:.4f} "
            f"acc_acc={row['accepted_acc']:.4f} tpr={row['tpr_test']:.3f} "
            f"added={row['added_ms_per_1k']:.2f}ms/1k fit={fit_s:.1f}s "
            f"same_clf={row['same_classifier']}"
        )
    return rows


# -- summary ---------------------------------------------------------------------------------
def summarize(rows):
    by = defaultdict(list)
    for r in rows:
        by[(r["setting"], r["gate"])].append(r)
    for setting in dict.fromkeys(r["setting"] for r in rows):
        n_runs = len({(r["split"], r["seed"]) for r in rows if r["setting"] == setting})
        print(f"\n### {setting} ({n_runs} runs: split x seed; mean ± std)\n")
        print("| gate | " + " | ".join(METRICS) + " |")
        print("|---" * (len(METRICS) + 1) + "|")
        for gate in ALL_GATES:
            rs = by.get((setting, gate))
            if not rs:
                continue
            cells = []
            for m in METRICS:
                v = np.array([float(r[m]) for r in rs])
                fmt = ".2f" if m in ("added_ms_per_1k", "fit_s") else ".4f"
                cells.append(f"{v.mean():{fmt}} ± {v.std(ddof=1) if v.size > 1 else 0:{fmt}}")
            print(f"| {gate} | " + " | ".join(cells) + " |")
        same = all(r["same_classifier"] in (True, "True") for r in rows if r["setting"] == setting)
        print(f"\nsame classifier (predict_closed_set identical) for every gate: {same}")
        ref = {(r["split"], r["seed"]): float(r["fpr95"]) for r in by[(setting, "flow_q0.05")]}
        if not ref:
            continue
        print("\npaired FPR95, flow_q0.05 minus other (negative = flow better):\n")
        print("| other | mean diff | flow wins | flow losses | ties | runs |")
        print("|---|---|---|---|---|---|")
        for gate in ALL_GATES:
            if gate == "flow_q0.05" or not by.get((setting, gate)):
                continue
            d = np.array(
                [
                    ref[(r["split"], r["seed"])] - float(r["fpr95"])
                    for r in by[(setting, gate)]
                    if (r["split"], r["seed"]) in ref
                ]
            )
            print(
                f"| {gate} | {d.mean():+.4f} | {(d < 0).sum()} | {(d > 0).sum()} | "
                f"{(d == 0).sum()} | {d.size} |"
            )


def write_csv(rows, path):
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", default=["digits", "mvtec"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--splits", type=int, default=3, help="digits class splits (first is 0-5)")
    ap.add_argument("--split-seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--gates", nargs="+", default=ALL_GATES[:-1], choices=ALL_GATES)
    ap.add_argument("--cnn-epochs", type=int, default=30, help="digits stage-1 epochs")
    ap.add_argument("--mlp-epochs", type=int, default=30, help="MVTec stage-1 epochs")
    ap.add_argument("--flow-epochs-digits", type=int, default=200)
    ap.add_argument("--flow-epochs-mvtec", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=15, help="timing repeats (median)")
    ap.add_argument(
        "--features",
        choices=["post", "pre"],
        default="post",
        help="stage-1 features after (post) or before (pre) the penultimate ReLU",
    )
    ap.add_argument("--out", default=str(HERE / "open_set_table1.csv"))
    ap.add_argument("--log", default=None, help="also append progress lines to this file")
    ap.add_argument("--merge", nargs="+", default=None, help="CSVs to merge (--summarize-only)")
    ap.add_argument("--summarize-only", action="store_true")
    args = ap.parse_args()

    if args.summarize_only:
        rows = []
        for path in args.merge or [args.out]:
            with open(path) as f:
                rows += list(csv.DictReader(f))
        if args.merge:
            write_csv(rows, args.out)
        summarize(rows)
        return

    def log(msg):
        line = f"[{time.strftime('%H:%M:%S', time.gmtime())}Z] {msg}"
        print(line, flush=True)
        if args.log:
            with open(args.log, "a") as f:
                f.write(line + "\n")

    log(f"args: {vars(args)}")
    t_start = time.perf_counter()
    rows = []
    for setting in args.settings:
        splits = digits_splits(args.splits, args.split_seeds) if setting == "digits" else [None]
        for split in splits:
            for seed in args.seeds:
                if setting == "digits":
                    name = split[0]
                    data = digits_data(split[1], seed)
                else:
                    name = "15cat"
                    data = mvtec_data(seed)
                rows += run_one(setting, name, seed, data, args.gates, args, log)
                write_csv(rows, args.out)
    log(f"total wall-clock {time.perf_counter() - t_start:.0f} s")
    summarize(rows)


if __name__ == "__main__":
    main()
