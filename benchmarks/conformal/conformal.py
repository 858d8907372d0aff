"""Conformal p-values vs the ``contamination`` threshold: realized false-positive rate, FDR, power.

Issue 20's claim: on real data the split-conformal threshold (``ConformalDetector``, p <= alpha)
holds its nominal false-positive rate where the ``contamination``-quantile threshold does not
reliably, and Benjamini–Hochberg on the conformal p-values holds the false discovery rate.

Per (dataset, seed) the shared ADBench split (``benchmarks/_common/adbench.prepare``) is drawn and
each detector is fitted ONCE; every alpha is read off the same fitted model:

* ``contamination``: skood detectors: ``score < np.quantile(calibration_scores_, alpha)``, which
  is exactly ``predict`` of the detector fitted with ``contamination=alpha`` (the fit does not
  depend on ``contamination``; checked against ``predict`` at alpha = 0.1).
  ``IsolationForest``: fitted on the ConformalDetector's 70 % of the training inliers, threshold
  the alpha-quantile of its ``score_samples`` on the held-out 30 % (the same rows the conformal
  p-values are calibrated on).
* ``conformal``: ``ConformalDetector(det, alpha=0.1, random_state=seed)`` fitted once; its p-values
  (``score_samples``) on the test rows, flagged where ``p <= alpha``.
* ``conformal_bh``: ``benjamini_hochberg(p, alpha)`` on the whole test set (what
  ``ConformalDetector(fdr=True).predict`` does; checked at alpha = 0.1).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/conformal/conformal.py --help
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
import argparse
import csv
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
from scipy.stats import betabinom, binom
from sklearn.ensemble import IsolationForest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import ADBENCH_DIR
from benchmarks._common.adbench import prepare
from skood import GaussianMahalanobis, QuantileFlowDetector
from skood.conformal import ConformalDetector, benjamini_hochberg, conformal_p_values

HERE = Path(__file__).resolve().parent
ALPHAS = (0.01, 0.05, 0.1)
FIT_ALPHA = 0.1  # the alpha the ConformalDetector / contamination is fitted at (all read off it)
DETECTORS = ("gaussian", "flow", "iforest")
METHODS = ("contamination", "conformal", "conformal_bh")
MIN_TRAIN = 60  # fewer training inliers: skipped (too few calibration rows for these levels)
FIELDS = [
    "group",
    "dataset",
    "seed",
    "detector",
    "alpha",
    "method",
    "n_train",
    "n_calibration",
    "reachable",
    "n_test_inliers",
    "n_test_anomalies",
    "n_flagged",
    "false_positives",
    "true_positives",
    "fpr",
    "power",
    "fdp",
    "fit_s",
]


def datasets(groups, names):
    """``(group, name, path)`` of the sets to run: tabular (smallest first), then MVTec."""
    out = []
    if "tabular" in groups:
        tab = sorted(ADBENCH_DIR.glob("*.npz"), key=lambda p: np.load(p)["y"].shape[0])
        out += [("tabular", p.stem, p) for p in tab]
    if "mvtec" in groups:
        mv = sorted((ADBENCH_DIR / "mvtec_resnet18").glob("*.npz"))
        out += [("mvtec", p.stem.replace("MVTec-AD_", "mvtec_"), p) for p in mv]
    if names:
        out = [d for d in out if d[1] in names]
    return out


def make_detector(name, seed, args):
    if name == "gaussian":
        return GaussianMahalanobis(contamination=FIT_ALPHA, random_state=seed)
    if name == "flow":
        return QuantileFlowDetector(
            q="mean",
            n_blocks=4,
            hidden_sizes=(128, 128),
            max_epochs=args.flow_epochs,
            min_steps=args.flow_steps,
            contamination=FIT_ALPHA,
            device="cpu",
            random_state=seed,
        )
    return IsolationForest(random_state=seed)


def fit_and_score(name, seed, Xtr, Xte, args):
    """Fit once; return test scores, contamination offsets per alpha, test p-values, n_cal, fit s.

    The p-values come from ``ConformalDetector.score_samples``; the offsets from the calibration
    scores as ``np.quantile`` (skood's ``_set_offset`` rule). Both ``predict`` paths are checked at
    ``FIT_ALPHA`` against what is read off here.
    """
    t0 = time.time()
    if name == "flow" and Xtr.shape[0] > args.flow_cap:  # CPU-sized: cap the flow's rows
        rng = np.random.RandomState(seed)
        Xtr = Xtr[np.sort(rng.choice(Xtr.shape[0], args.flow_cap, replace=False))]
    conf = ConformalDetector(make_detector(name, seed, args), alpha=FIT_ALPHA, random_state=seed)
    conf.fit(Xtr)
    p = conf.score_samples(Xte)
    if name == "gaussian":
        # The Gaussian's calibration scores are out-of-fold (not held out), so ConformalDetector
        # refits it on 70 % of the rows; the contamination threshold is the one of the
        # detector fitted on every training row, as a user would fit it.
        det = make_detector(name, seed, args).fit(Xtr)
        calibration = det.calibration_scores_
    elif name == "flow":
        # The flow holds its own 20 % out: ConformalDetector reuses those scores, so the
        # contamination threshold and the p-values come from the very same model and rows.
        assert conf.reused_calibration_
        det = conf.estimator_
        calibration = det.calibration_scores_
    else:
        det = conf.estimator_  # fitted on 70 % of the inliers
        calibration = conf.calibration_scores_  # its scores of the held-out 30 %
    fit_s = time.time() - t0
    scores = np.asarray(det.score_samples(Xte), dtype=np.float64)
    offsets = {a: float(np.quantile(calibration, a)) for a in ALPHAS}
    # checks: the library's own predict paths agree with what is read off here
    if name != "iforest":
        assert np.isclose(det.offset_, offsets[FIT_ALPHA]), (det.offset_, offsets[FIT_ALPHA])
        assert np.array_equal(det.predict(Xte) == -1, scores < offsets[FIT_ALPHA])
    assert np.array_equal(conf.predict(Xte) == -1, p <= FIT_ALPHA)
    assert np.array_equal(conf.set_params(fdr=True).predict(Xte) == -1, benjamini_hochberg(p, 0.1))
    assert np.allclose(p, conformal_p_values(conf.calibration_scores_, conf.detector_scores(Xte)))
    return scores, offsets, p, int(conf.n_calibration_), int(Xtr.shape[0]), fit_s


def cell_rows(meta, flags_by_method, yte, n_cal, alpha):
    anomaly = yte == -1
    rows = []
    for method, flagged in flags_by_method.items():
        fp = int(np.sum(flagged & ~anomaly))
        tp = int(np.sum(flagged & anomaly))
        n_flag = int(flagged.sum())
        rows.append(
            {
                **meta,
                "alpha": alpha,
                "method": method,
                "n_calibration": n_cal,
                "reachable": int(alpha >= 1.0 / (n_cal + 1)),
                "n_test_inliers": int((~anomaly).sum()),
                "n_test_anomalies": int(anomaly.sum()),
                "n_flagged": n_flag,
                "false_positives": fp,
                "true_positives": tp,
                "fpr": fp / max(int((~anomaly).sum()), 1),
                "power": tp / max(int(anomaly.sum()), 1),
                "fdp": fp / max(n_flag, 1),
            }
        )
    return rows


def run(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "results.csv"
    done = set()
    if csv_path.exists() and not args.fresh:
        with open(csv_path) as f:
            done = {(r["dataset"], int(r["seed"]), r["detector"]) for r in csv.DictReader(f)}
    else:
        with open(csv_path, "w", newline="") as f:
            csv.DictWriter(f, FIELDS).writeheader()
    sets = datasets(args.groups, args.datasets)
    tasks = [(g, n, p, s) for g, n, p in sets for s in args.seeds]
    start = time.time()
    for group, name, path, seed in tasks:
        if time.time() - start > args.budget:
            print(f"budget of {args.budget} s spent: stopping before {name} seed {seed}")
            break
        Xtr, Xte, yte = prepare(path, seed)
        if Xtr.shape[0] < MIN_TRAIN:
            print(f"skip {name} seed {seed}: {Xtr.shape[0]} training inliers < {MIN_TRAIN}")
            continue
        for det in args.detectors:
            if (name, seed, det) in done:
                continue
            if det == "flow" and seed not in args.flow_seeds:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores, offsets, p, n_cal, n_fit, fit_s = fit_and_score(det, seed, Xtr, Xte, args)
            meta = {
                "group": group,
                "dataset": name,
                "seed": seed,
                "detector": det,
                "n_train": n_fit,
                "fit_s": round(fit_s, 2),
            }
            rows = []
            for a in ALPHAS:
                flags = {
                    "contamination": scores < offsets[a],
                    "conformal": p <= a,
                    "conformal_bh": benjamini_hochberg(p, a),
                }
                rows += cell_rows(meta, flags, yte, n_cal, a)
            with open(csv_path, "a", newline="") as f:
                csv.DictWriter(f, FIELDS).writerows(rows)
            r = {(x["alpha"], x["method"]): x for x in rows}
            print(
                f"{time.time() - start:7.0f}s {name:22s} seed {seed} {det:8s} n_fit {n_fit:5d} "
                f"n_cal {n_cal:5d} fit {fit_s:6.1f}s | FPR@0.1 cont {r[0.1, 'contamination']['fpr']:.3f} "
                f"conf {r[0.1, 'conformal']['fpr']:.3f} | FDP@0.1 BH {r[0.1, 'conformal_bh']['fdp']:.3f}",
                flush=True,
            )
    print(f"total {time.time() - start:.0f} s")


# -- report ----------------------------------------------------------------------------------------
def read_rows(csv_path):
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("seed", "n_train", "n_calibration", "reachable", "n_test_inliers"):
            r[k] = int(r[k])
        for k in ("n_test_anomalies", "n_flagged", "false_positives", "true_positives"):
            r[k] = int(r[k])
        for k in ("alpha", "fpr", "power", "fdp", "fit_s"):
            r[k] = float(r[k])
    return rows


def exceeds_binomial(r):
    """Realized FPR above alpha beyond test-row noise: one-sided binomial test at 5 %."""
    return binom.sf(r["false_positives"] - 1, r["n_test_inliers"], r["alpha"]) < 0.05


def exceeds_beta_binomial(r):
    """Beyond test AND calibration noise: the false positives of a threshold calibrated on ``n``
    exchangeable inliers at level alpha are Beta-Binomial(n_test, alpha (n+1), (1-alpha)(n+1))."""
    n1 = r["n_calibration"] + 1
    k = r["false_positives"]
    return betabinom.sf(k - 1, r["n_test_inliers"], r["alpha"] * n1, (1 - r["alpha"]) * n1) < 0.05


def rate(r):
    return r["fdp"] if r["method"] == "conformal_bh" else r["fpr"]


def summary(rows):
    """Per (detector, alpha, method) over the reachable (dataset, seed) cells."""
    out = []
    for det in DETECTORS:
        for a in ALPHAS:
            for m in METHODS:
                cells = [
                    r for r in rows if r["detector"] == det and r["alpha"] == a and r["method"] == m
                ]
                cells = [r for r in cells if r["reachable"]]
                if not cells:
                    continue
                vals = np.array([rate(r) for r in cells])
                if m == "conformal_bh":
                    over_bin, over_bb = np.nan, np.nan
                    over_raw = float(np.mean(vals > a))
                else:
                    over_bin = float(np.mean([exceeds_binomial(r) for r in cells]))
                    over_bb = float(np.mean([exceeds_beta_binomial(r) for r in cells]))
                    over_raw = float(np.mean(vals > a))
                out.append(
                    {
                        "detector": det,
                        "alpha": a,
                        "method": m,
                        "cells": len(cells),
                        "mean": float(vals.mean()),
                        "se": float(vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else 0,
                        "p10": float(np.percentile(vals, 10)),
                        "p90": float(np.percentile(vals, 90)),
                        "over_raw": over_raw,
                        "over_bin": over_bin,
                        "over_bb": over_bb,
                        "power": float(np.mean([r["power"] for r in cells])),
                    }
                )
    return out


def _pct(x):
    return "n/a" if x != x else f"{100 * x:.0f} %"


def report(args):
    out = Path(args.out)
    rows = read_rows(out / "results.csv")
    summ = summary(rows)
    lines = [
        "# Conformal p-values vs the contamination threshold on ADBench",
        "",
        "Generated by `benchmarks/conformal/conformal.py report` from `results.csv`; see README.md.",
        "",
    ]
    cells = sorted({(r["dataset"], r["seed"]) for r in rows})
    dsets = sorted({r["dataset"] for r in rows})
    by_det = {
        d: sorted({(r["dataset"], r["seed"]) for r in rows if r["detector"] == d})
        for d in DETECTORS
    }
    lines += [
        f"{len(dsets)} datasets, {len(cells)} (dataset, seed) cells; per detector: "
        + ", ".join(f"{d} {len(v)}" for d, v in by_det.items())
        + ". Cells where alpha < 1 / (n_calibration + 1) (conformal cannot reach the level) are "
        "left out of the summary (listed below).",
        "",
        "## Summary (reachable cells)",
        "",
        "Rate = realized false-positive rate on the test inliers (share flagged), or for "
        "`conformal_bh` the false discovery proportion of the batch. p10 / p90 over the "
        "(dataset, seed) cells. *> binom*: share of cells whose false positives exceed alpha "
        "beyond test-row binomial noise (one-sided Binomial(n_test_inliers, alpha) test at 5 %; "
        "this ignores the calibration draw, so a valid rule with few calibration rows can fail it "
        "more often than 5 %); *> beta-binom*: beyond test AND calibration noise (one-sided test "
        "at 5 % against Beta-Binomial(n_test_inliers, alpha (n+1), (1 - alpha)(n+1)), n = the "
        "cell's n_calibration: the law of the false positives of a threshold at level alpha set "
        "on n exchangeable inliers; a valid rule fails it in about 5 % of cells or fewer). "
        "*> alpha raw*: share of cells with rate > alpha at all (for BH the FDR bounds the mean "
        "FDP, not each cell's). Power = share of the test anomalies flagged.",
        "",
        "| detector | alpha | method | cells | mean rate | ±SE | p10 | p90 | > alpha raw | > binom | > beta-binom | power |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summ:
        lines.append(
            f"| {s['detector']} | {s['alpha']} | {s['method']} | {s['cells']} | {s['mean']:.4f} | "
            f"{s['se']:.4f} | {s['p10']:.4f} | {s['p90']:.4f} | {_pct(s['over_raw'])} | "
            f"{_pct(s['over_bin'])} | {_pct(s['over_bb'])} | {s['power']:.3f} |"
        )
    # unreachable cells
    unreach = [r for r in rows if not r["reachable"] and r["method"] == "contamination"]
    lines += ["", "## Cells where conformal cannot reach alpha (n_calibration + 1 < 1 / alpha)", ""]
    if unreach:
        lines += [
            "Conformal flags nothing there (FPR 0, power 0, by construction). The contamination "
            "threshold still flags, at this realized FPR:",
            "",
            "| detector | alpha | dataset | seed | n_calibration | contamination FPR |",
            "|---|---|---|---|---|---|",
        ]
        for r in sorted(
            unreach, key=lambda r: (r["detector"], r["alpha"], r["dataset"], r["seed"])
        ):
            lines.append(
                f"| {r['detector']} | {r['alpha']} | {r['dataset']} | {r['seed']} | "
                f"{r['n_calibration']} | {r['fpr']:.3f} |"
            )
    else:
        lines.append("None.")
    # per-dataset table: where did the conformal FPR exceed beyond noise?
    lines += [
        "",
        "## Per dataset: conformal FPR at alpha = 0.1, mean over seeds (cells beyond beta-binomial noise in bold)",
        "",
        "| dataset | n_train | gaussian | flow | iforest | contamination gaussian | contamination flow | contamination iforest | BH FDP@0.1 mean |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in dsets:
        dr = [r for r in rows if r["dataset"] == d and r["alpha"] == 0.1]
        cells_txt = []
        for m in ("conformal", "contamination"):
            for det in DETECTORS:
                sel = [r for r in dr if r["detector"] == det and r["method"] == m]
                if not sel:
                    cells_txt.append("-")
                    continue
                txt = f"{np.mean([r['fpr'] for r in sel]):.3f}"
                n_over = sum(exceeds_beta_binomial(r) for r in sel)
                if n_over:
                    txt = f"**{txt}** ({n_over}/{len(sel)})"
                cells_txt.append(txt)
        bh = [r["fdp"] for r in dr if r["method"] == "conformal_bh"]
        n_train = max(r["n_train"] for r in dr if r["detector"] != "flow")
        lines.append(f"| {d} | {n_train} | " + " | ".join(cells_txt) + f" | {np.mean(bh):.3f} |")
    lines += [
        "",
        "## Fit time per detector (s, mean over cells; the conformal fit, plus the separate "
        "full-data fit for the Gaussian)",
        "",
    ]
    for det in DETECTORS:
        fs = [r["fit_s"] for r in rows if r["detector"] == det and r["method"] == "conformal"]
        if fs:
            lines.append(
                f"- {det}: {np.mean(fs) * 1:.2f} s mean, {np.sum(fs) / len(ALPHAS):.0f} s total"
            )
    (out / "conformal.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(summ, out / "realized_vs_nominal.png")


def plot(summ, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DETECTORS), figsize=(4.2 * len(DETECTORS), 4), sharey=True)
    style = {
        "contamination": ("tab:red", "s", -0.002, "contamination quantile (FPR)"),
        "conformal": ("tab:blue", "o", 0.0, "conformal p <= alpha (FPR)"),
        "conformal_bh": ("tab:green", "^", 0.002, "conformal + BH (FDP)"),
    }
    for ax, det in zip(axes, DETECTORS):
        ax.plot([0, 0.11], [0, 0.11], color="grey", lw=1, ls="--", label="y = x")
        for m, (color, marker, dx, label) in style.items():
            sel = [s for s in summ if s["detector"] == det and s["method"] == m]
            if not sel:
                continue
            x = np.array([s["alpha"] for s in sel]) + dx
            y = np.array([s["mean"] for s in sel])
            lo = np.array([s["p10"] for s in sel])
            hi = np.array([s["p90"] for s in sel])
            ax.vlines(x, lo, hi, color=color, lw=1.5, alpha=0.6)  # p10 to p90 (may miss the mean)
            ax.plot(x, y, color=color, marker=marker, label=label)
        ax.set_title(det)
        ax.set_xlabel("nominal alpha")
        ax.set_xticks(ALPHAS)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("realized rate (mean; bars: 10th-90th pct over cells)")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Realized vs nominal rate on ADBench test rows")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=["run", "report"],
        help="run: fit and append to results.csv, then write the report; report: only the report",
    )
    ap.add_argument(
        "--groups", nargs="+", default=["tabular", "mvtec"], choices=["tabular", "mvtec"]
    )
    ap.add_argument(
        "--datasets",
        nargs="*",
        default=[],
        help="dataset names (e.g. 19_landsat mvtec_pill); default all",
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument(
        "--flow-seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds the flow runs on"
    )
    ap.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    ap.add_argument(
        "--flow-cap", type=int, default=2000, help="training rows the flow fits on at most"
    )
    ap.add_argument("--flow-steps", type=int, default=300, help="the flow's min_steps")
    ap.add_argument("--flow-epochs", type=int, default=10, help="the flow's max_epochs")
    ap.add_argument(
        "--budget",
        type=float,
        default=float("inf"),
        help="seconds after which no new (dataset, seed) starts",
    )
    ap.add_argument(
        "--out", default=str(HERE), help="folder for results.csv, conformal.md and the figure"
    )
    ap.add_argument(
        "--fresh", action="store_true", help="overwrite results.csv instead of resuming it"
    )
    args = ap.parse_args(argv)
    if args.command == "run":
        run(args)
    report(args)


if __name__ == "__main__":
    main()
