"""Exposing Outlier Exposure, Fig. 2 / App. A at CPU scale: test AUROC vs the number of OE samples.

Methods: HSCDetector
(pseudo-Huber), OEClassifier(loss="bce"), OEClassifier(loss="focal"), DeepSADDetector, all at
their defaults (MLP (128, 64) -> 32, 128 normal + 128 OE per batch, 50 epochs, Adam lr 1e-3),
random_state=seed; DeepSVDDDetector (ignores OE) is fitted once per (class, seed) on the normal
rows only. No-OE peers, also once per (class, seed), on VarianceThreshold -> StandardScaler
features fitted on the training normals: IsolationForest, LocalOutlierFactor(novelty=True),
GaussianMahalanobis(covariance="ledoit_wolf"), PyOD KNN (score negated).

Settings:
  (A) "digits": sklearn digits / 16, one-vs-rest. Normal digit c; the other nine digits are split
      ONCE per c (the same for every seed) by ``np.random.default_rng(1000 + c).permutation``: the
      first 4 are the OE-pool classes, the last 5 the test-anomaly classes (disjoint). Per seed,
      class c is permuted by ``default_rng([seed, c])`` and split 50/50 (train / test); the OE pool
      is permuted by ``default_rng([seed, c, 7])`` and the first n_oe rows are the OE set, so the
      OE sets are nested in n_oe within a (c, seed) and identical for every method. Test = class
      c's test half + every row of the 5 test-anomaly classes.
  (B) "mvtec": ADBench MVTec-AD ResNet-18 features (512-d). Per category and seed: train = a random
      50 % of its normal rows (``default_rng([seed, k])``); test = its other normal rows + all its
      anomalies; OE = the first n_oe rows of a ``default_rng([seed, k, 7])`` permutation of the
      NORMAL rows of the other 14 categories. X is standardised on the category's training
      normals (OE and test rows included). The paper used ImageNet-22k as OE for MVTec.

Usage (from the repo root):
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/oe_size/oe_size.py --settings digits \
      --seeds 0 1 2 --out benchmarks/oe_size/oe_size_digits.csv --log benchmarks/oe_size/oe_size_digits.log
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/oe_size/oe_size.py --settings mvtec \
      --seeds 0 1 --out benchmarks/oe_size/oe_size_mvtec.csv --log benchmarks/oe_size/oe_size_mvtec.log
  .venv/bin/python benchmarks/oe_size/oe_size.py --summarize-only \
      --merge benchmarks/oe_size/oe_size_digits.csv benchmarks/oe_size/oe_size_mvtec.csv \
      --out benchmarks/oe_size/oe_size.csv --plot benchmarks/oe_size/oe_size.png
Appends one CSV row per fitted model as soon as it is scored (``--resume`` skips rows already
there), then prints the tables.
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
import warnings
from collections import defaultdict
from functools import partial

import numpy as np
import torch
from sklearn.ensemble import IsolationForest
from sklearn.feature_selection import VarianceThreshold
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skood import (
    DeepSADDetector,
    DeepSVDDDetector,
    GaussianMahalanobis,
    HSCDetector,
    OEClassifier,
)
from skood.datasets import list_adbench, load_adbench, load_digits_ood
from skood.metrics import auroc
from skood.nn.networks import MLPEncoder

torch.set_num_threads(1)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root
from benchmarks._common import ADBENCH_DIR

MVTEC_DIR = ADBENCH_DIR / "mvtec_resnet18"

OE_METHODS = ["hsc", "bce", "focal", "dsad"]
# Ablation (not run by default): HSC on a bias-free MLP also when there is OE. skood's default
# network has biases with OE and none without, so this isolates the network switch at n_oe = 0 -> 1.
EXTRA_METHODS = ["hsc_nobias"]
BASE_METHODS = ["dsvdd"]  # no OE, one fit per (class, seed)
ALL_PEERS = ["iforest", "lof", "mahalanobis", "knn"]
LABELS = {
    "hsc": "HSC",
    "hsc_nobias": "HSC, bias-free MLP (ablation)",
    "bce": "BCE",
    "focal": "Focal",
    "dsad": "Deep SAD",
    "dsvdd": "Deep SVDD",
    "iforest": "IsolationForest",
    "lof": "LOF",
    "mahalanobis": "Mahalanobis (LW)",
    "knn": "PyOD KNN",
}
DEFAULT_N_OE = {
    "digits": ["0", "1", "2", "4", "8", "16", "64", "all"],
    "mvtec": ["0", "1", "4", "16", "64", "256"],
}
KEY = ("setting", "cls", "seed", "n_oe", "method")


# -- data ------------------------------------------------------------------------------------
def digits_cells(seeds):
    """Yield (class name, seed, X_train_normal, X_oe_pool_permuted, X_test, y_test, info)."""
    X, digit = load_digits_ood(range(10))
    X = (X / 16.0).astype(np.float32)
    for c in range(10):
        others = [d for d in range(10) if d != c]
        perm = np.random.default_rng(1000 + c).permutation(others)
        oe_classes, test_classes = sorted(perm[:4].tolist()), sorted(perm[4:].tolist())
        own = np.flatnonzero(digit == c)
        pool = np.flatnonzero(np.isin(digit, oe_classes))
        anom = np.flatnonzero(np.isin(digit, test_classes))
        for seed in seeds:
            p = np.random.default_rng([seed, c]).permutation(own)
            half = len(p) // 2
            tr, te = p[:half], p[half:]
            oe = np.random.default_rng([seed, c, 7]).permutation(pool)
            X_test = np.concatenate([X[te], X[anom]])
            y_test = np.r_[np.ones(len(te)), -np.ones(len(anom))].astype(int)
            info = {
                "oe_classes": "".join(map(str, oe_classes)),
                "test_classes": "".join(map(str, test_classes)),
            }
            yield str(c), seed, X[tr], X[oe], X_test, y_test, info


def mvtec_cells(seeds, categories=None):
    paths = list_adbench(MVTEC_DIR)
    data = [load_adbench(p) for p in paths]  # y: +1 normal, -1 anomaly
    names = [Path(p).stem.replace("MVTec-AD_", "") for p in paths]
    for k, (name, (X, y)) in enumerate(zip(names, data)):
        if categories and name not in categories:
            continue
        normal, anom = np.flatnonzero(y == 1), np.flatnonzero(y == -1)
        pool = np.concatenate([d[0][d[1] == 1] for j, d in enumerate(data) if j != k])
        for seed in seeds:
            p = np.random.default_rng([seed, k]).permutation(normal)
            half = len(p) // 2
            tr, te = p[:half], p[half:]
            scaler = StandardScaler().fit(X[tr])

            def t(A, scaler=scaler):
                return scaler.transform(A).astype(np.float32)

            oe = pool[np.random.default_rng([seed, k, 7]).permutation(len(pool))]
            X_test = t(np.concatenate([X[te], X[anom]]))
            y_test = np.r_[np.ones(len(te)), -np.ones(len(anom))].astype(int)
            info = {"oe_classes": "other 14 categories (normal rows)", "test_classes": name}
            yield name, seed, t(X[tr]), t(oe), X_test, y_test, info


# -- models ----------------------------------------------------------------------------------
def make_deep(method, seed, epochs):
    # min_steps=0: exactly `epochs` passes, as recorded (the estimators' min_steps default came
    # after this benchmark, prompted by its 500-epoch finding).
    kw = dict(max_epochs=epochs, min_steps=0, random_state=seed, device="cpu")
    if method == "hsc":
        return HSCDetector(**kw)
    if method == "hsc_nobias":
        return HSCDetector(module=partial(MLPEncoder, bias=False), **kw)
    if method in ("bce", "focal"):
        return OEClassifier(loss=method, **kw)
    if method == "dsad":
        return DeepSADDetector(**kw)
    if method == "dsvdd":
        return DeepSVDDDetector(**kw)
    raise ValueError(method)


def make_peer(method, seed):
    if method == "iforest":
        det = IsolationForest(random_state=seed)
    elif method == "lof":
        det = LocalOutlierFactor(novelty=True)
    elif method == "mahalanobis":
        det = GaussianMahalanobis(covariance="ledoit_wolf", offset_cv=None)
    elif method == "knn":
        from pyod.models.knn import KNN

        det = KNN()
    else:
        raise ValueError(method)
    return make_pipeline(VarianceThreshold(), StandardScaler(), det)


def peer_scores(model, method, X):
    if method == "knn":  # PyOD: higher = more anomalous
        pre = model[:-1].transform(X)
        return -model[-1].decision_function(pre)
    return model.score_samples(X)


# -- running ---------------------------------------------------------------------------------
def n_oe_value(tag, pool_size):
    return pool_size if tag == "all" else min(int(tag), pool_size)


def run_cell(setting, cell, args, done, out, log, seen_warnings):
    name, seed, X_tr, X_pool, X_te, y_te, info = cell
    base = dict(
        setting=setting,
        cls=name,
        seed=seed,
        n_train=X_tr.shape[0],
        n_test_normal=int((y_te == 1).sum()),
        n_test_anom=int((y_te == -1).sum()),
        **info,
    )

    def record(n_oe_tag, n_oe, method, fit_fn, score_fn):
        key = (setting, name, str(seed), str(n_oe_tag), method)
        if key in done:
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            try:
                model = fit_fn()
                fit_s = time.perf_counter() - t0
                value, err = auroc(y_te, score_fn(model)), ""
            except ValueError as e:  # OEClassifier without OE
                fit_s, value, err = time.perf_counter() - t0, float("nan"), str(e)[:80]
        for w in caught:
            msg = f"{method}: {str(w.message)[:110]}"
            if msg not in seen_warnings:
                seen_warnings.add(msg)
                log(f"  warning (first time) {w.category.__name__}: {msg}")
        row = dict(base, n_oe=n_oe_tag, n_oe_used=n_oe, method=method)
        row.update(auroc=value, fit_s=round(fit_s, 4), epochs=args.epochs, error=err)
        append_row(row, out)
        done.add(key)
        log(
            f"{setting} {name} seed={seed} n_oe={n_oe_tag:>4s} {method:12s} "
            f"AUROC={value:.4f} fit={fit_s:.2f}s {err}"
        )

    for method in args.peers:
        record(
            "none",
            0,
            method,
            lambda m=method: make_peer(m, seed).fit(X_tr),
            lambda model, m=method: peer_scores(model, m, X_te),
        )
    for method in args.base:
        record(
            "none",
            0,
            method,
            lambda m=method: make_deep(m, seed, args.epochs).fit(X_tr),
            lambda model: model.score_samples(X_te),
        )
    for tag in args.n_oe or DEFAULT_N_OE[setting]:
        n = n_oe_value(tag, X_pool.shape[0])
        X_fit = np.concatenate([X_tr, X_pool[:n]])
        y_fit = np.r_[np.ones(X_tr.shape[0]), -np.ones(n)].astype(int)
        for method in args.methods:
            record(
                tag,
                n,
                method,
                lambda m=method, X=X_fit, y=y_fit: make_deep(m, seed, args.epochs).fit(X, y),
                lambda model: model.score_samples(X_te),
            )


FIELDS = [
    "setting",
    "cls",
    "seed",
    "n_oe",
    "n_oe_used",
    "method",
    "auroc",
    "fit_s",
    "epochs",
    "n_train",
    "n_test_normal",
    "n_test_anom",
    "oe_classes",
    "test_classes",
    "error",
]


def append_row(row, path):
    new = not Path(path).exists() or Path(path).stat().st_size == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)


def read_rows(paths):
    rows = []
    for path in paths:
        if Path(path).exists():
            with open(path) as f:
                rows += list(csv.DictReader(f))
    return rows


# -- summary ---------------------------------------------------------------------------------
def n_oe_order(setting, rows):
    tags = list(dict.fromkeys(r["n_oe"] for r in rows if r["setting"] == setting))
    tags = [t for t in tags if t != "none"]
    return sorted(tags, key=lambda t: float("inf") if t == "all" else int(t))


def cell_stats(rows):
    """mean over class x seed, std over seeds of the class-mean (ddof=1), runs; NaN-free rows."""
    vals = [(r["seed"], float(r["auroc"])) for r in rows if r["auroc"] not in ("", "nan")]
    vals = [(s, v) for s, v in vals if np.isfinite(v)]
    if not vals:
        return None
    by_seed = defaultdict(list)
    for s, v in vals:
        by_seed[s].append(v)
    seed_means = np.array([np.mean(v) for v in by_seed.values()])
    std = seed_means.std(ddof=1) if seed_means.size > 1 else 0.0
    return float(np.mean([v for _, v in vals])), float(std), len(vals)


def paired(by, tags, a, b, title):
    """Paired difference a - b per (class, seed); a None n_oe means 'the column's n_oe'."""
    print(f"\npaired {title}, per (class, seed): mean diff, wins / losses / ties of the first\n")
    print("| n_oe | mean diff | wins | losses | ties | pairs |")
    print("|---|---|---|---|---|---|")
    for t in tags:
        ref = {(r["cls"], r["seed"]): float(r["auroc"]) for r in by.get((b[0], b[1] or t), [])}
        d = np.array(
            [
                float(r["auroc"]) - ref[(r["cls"], r["seed"])]
                for r in by.get((a[0], a[1] or t), [])
                if (r["cls"], r["seed"]) in ref
            ]
        )
        d = d[np.isfinite(d)]
        if d.size == 0:
            print(f"| {t} | n/a | | | | 0 |")
            continue
        print(
            f"| {t} | {d.mean():+.3f} | {(d > 0).sum()} | {(d < 0).sum()} | "
            f"{(d == 0).sum()} | {d.size} |"
        )


def summarize(rows):
    """Tables per setting; rows with a non-default ``epochs`` form their own setting label."""
    rows = [dict(r) for r in rows]
    for r in rows:
        if r.get("epochs") not in (None, "", "50"):
            r["setting"] = f"{r['setting']} ({r['epochs']} epochs)"
    tables = {}
    for setting in dict.fromkeys(r["setting"] for r in rows):
        srows = [r for r in rows if r["setting"] == setting]
        tags = n_oe_order(setting, srows)
        n_cls = len({r["cls"] for r in srows})
        seeds = sorted({r["seed"] for r in srows}, key=int)
        print(
            f"\n### {setting}: test AUROC, mean over {n_cls} classes x seeds {','.join(seeds)}"
            " (± std over seeds of the class-mean)\n"
        )
        print("| method | " + " | ".join(f"n_oe={t}" for t in tags) + " |")
        print("|---" * (len(tags) + 1) + "|")
        by = defaultdict(list)
        for r in srows:
            by[(r["method"], r["n_oe"])].append(r)
        table = {}
        for m in OE_METHODS + EXTRA_METHODS + BASE_METHODS + ALL_PEERS:
            cells = []
            for t in tags:
                with_oe = m in OE_METHODS + EXTRA_METHODS
                st = cell_stats(by.get((m, t if with_oe else "none"), []))
                table[(m, t)] = st
                cells.append("n/a" if st is None else f"{st[0]:.3f} ± {st[1]:.3f}")
            if all(c == "n/a" for c in cells):
                continue
            note = "" if with_oe else " (no OE; repeated)"
            print(f"| {LABELS[m]}{note} | " + " | ".join(cells) + " |")
        tables[setting] = (tags, table)
        fit = defaultdict(list)
        for r in srows:
            fit[r["method"]].append(float(r["fit_s"]))
        print(
            "\nmedian fit s: "
            + ", ".join(f"{LABELS[m]} {np.median(v):.2f}" for m, v in fit.items() if v)
        )
        paired(by, tags, ("hsc", None), ("bce", None), "HSC minus BCE at the same n_oe")
        paired(by, tags, ("hsc", None), ("hsc", "0"), "HSC minus HSC without OE (n_oe = 0)")
        paired(by, tags, ("hsc", None), ("mahalanobis", "none"), "HSC minus Mahalanobis (no OE)")
        print("\nper class, seed-mean AUROC (HSC / BCE) at each n_oe:\n")
        print("| class | " + " | ".join(tags) + " | Deep SVDD | Mahalanobis |")
        print("|---" * (len(tags) + 3) + "|")
        for c in dict.fromkeys(r["cls"] for r in srows):

            def mean_of(m, t, c=c, by=by):
                v = [float(r["auroc"]) for r in by.get((m, t), []) if r["cls"] == c]
                v = [x for x in v if np.isfinite(x)]
                return f"{np.mean(v):.2f}" if v else "n/a"

            cells = [f"{mean_of('hsc', t)} / {mean_of('bce', t)}" for t in tags]
            cells += [mean_of("dsvdd", "none"), mean_of("mahalanobis", "none")]
            print(f"| {c} | " + " | ".join(cells) + " |")
    return tables


def plot(tables, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(tables)
    fig, axes = plt.subplots(1, len(settings), figsize=(6.2 * len(settings), 4.4), squeeze=False)
    colors = {
        "hsc": "C0",
        "hsc_nobias": "C9",
        "bce": "C3",
        "focal": "C1",
        "dsad": "C2",
        "dsvdd": "k",
    }
    peer_colors = {"iforest": "C4", "lof": "C5", "mahalanobis": "C6", "knn": "C7"}
    for ax, setting in zip(axes[0], settings):
        tags, table = tables[setting]
        x = np.arange(len(tags))
        for m in OE_METHODS + EXTRA_METHODS:
            pts = [(i, table[(m, t)]) for i, t in enumerate(tags) if table.get((m, t))]
            if not pts:
                continue
            xi = np.array([p[0] for p in pts])
            mu = np.array([p[1][0] for p in pts])
            sd = np.array([p[1][1] for p in pts])
            ls = ":" if m in EXTRA_METHODS else "-"
            ax.errorbar(
                xi,
                mu,
                yerr=sd,
                marker="o",
                ms=4,
                capsize=2,
                color=colors[m],
                ls=ls,
                label=LABELS[m],
            )
        for m in BASE_METHODS + ALL_PEERS:
            st = table.get((m, tags[0]))
            if st:
                c = colors.get(m) or peer_colors[m]
                ax.axhline(st[0], ls="--", lw=1, color=c, label=f"{LABELS[m]} (no OE)")
        ax.set_xticks(x, tags)
        ax.set_xlabel("n_oe (number of OE samples; categorical, ~log scale)")
        ax.set_ylabel("test AUROC (mean over classes x seeds)")
        ax.set_title(f"{setting}: AUROC vs OE size")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", framealpha=0.85)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    print(f"\nwrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", default=["digits", "mvtec"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-oe", nargs="+", default=None, help="default: per setting (see code)")
    ap.add_argument("--methods", nargs="+", default=OE_METHODS, choices=OE_METHODS + EXTRA_METHODS)
    ap.add_argument(
        "--peers", nargs="*", default=None, choices=ALL_PEERS, help="default: per setting"
    )
    ap.add_argument("--base", nargs="*", default=BASE_METHODS, choices=BASE_METHODS)
    ap.add_argument("--categories", nargs="+", default=None, help="MVTec subset (default all)")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--out", default=str(HERE / "oe_size.csv"))
    ap.add_argument("--log", default=None, help="also append progress lines to this file")
    ap.add_argument("--resume", action="store_true", help="skip rows already in --out")
    ap.add_argument("--merge", nargs="+", default=None, help="CSVs to merge (--summarize-only)")
    ap.add_argument("--plot", default=None, help="PNG path for the two-panel figure")
    ap.add_argument("--summarize-only", action="store_true")
    args = ap.parse_args()

    if args.summarize_only:
        rows = read_rows(args.merge or [args.out])
        for r in rows:  # CSVs written before the "epochs" column existed were all run at 50
            r["epochs"] = r.get("epochs") or "50"
        if args.merge:
            with open(args.out, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=FIELDS)
                w.writeheader()
                w.writerows(rows)
        tables = summarize(rows)
        if args.plot:
            plot(tables, args.plot)
        return

    def log(msg):
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}Z] {msg}"
        print(line, flush=True)
        if args.log:
            with open(args.log, "a") as f:
                f.write(line + "\n")

    done = set()
    if args.resume:
        done = {tuple(r[k] for k in KEY) for r in read_rows([args.out])}
    elif Path(args.out).exists():
        raise SystemExit(f"{args.out} exists: pass --resume or another --out")
    log(f"args: {vars(args)}")
    t_start = time.perf_counter()
    seen = set()
    for setting in args.settings:
        if args.peers is None:
            peers = ALL_PEERS if setting == "digits" else ["iforest", "mahalanobis"]
        else:
            peers = args.peers
        run_args = argparse.Namespace(**{**vars(args), "peers": peers})
        if setting == "digits":
            cells = digits_cells(args.seeds)
        else:
            cells = mvtec_cells(args.seeds, args.categories)
        for cell in cells:
            run_cell(setting, cell, run_args, done, args.out, log, seen)
    log(f"total wall-clock {time.perf_counter() - t_start:.0f} s")
    summarize(read_rows([args.out]))


if __name__ == "__main__":
    main()
