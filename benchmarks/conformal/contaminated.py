"""Calibration rows that hold outliers: the plain split, Label-Trim, and the two references.

Issue 35, item 2. Bashari, Sesia & Romano, "Robust conformal outlier detection under
contaminated reference data" (ICML 2025): a few outliers among the calibration rows make conformal
p-values conservative (fewer false positives than ``alpha`` allows, and less power); reviewing the
``m`` lowest-scoring calibration rows and dropping those a review finds to be outliers
(Label-Trim) recovers power and keeps the false-positive rate near ``alpha``.

Per repetition and data set, rows are drawn afresh (without replacement within a repetition):

* ``train``: clean inliers; a ``GaussianMahalanobis`` is fitted on them (after a
  ``StandardScaler``), then frozen (``sklearn.frozen.FrozenEstimator``);
* ``calibration``: ``N_CAL`` rows, a share ``c`` in {1 %, 5 %, 10 %} of them outliers (planted);
* ``test``: ``N_TEST_IN`` inliers and ``N_TEST_OUT`` outliers.

``ConformalDetector(FrozenEstimator(model), labeling_budget=M).fit(calibration)`` lists the ``M``
calibration rows to review; then, each read off the same fit:

* ``plain``: the contaminated calibration set as it is (``trim_calibration`` not called);
* ``label_trim``: ``trim_calibration(truth of the M listed rows)`` (the review is exact);
* ``naive_trim``: ``trim_calibration(all M listed rows)``: the M lowest rows dropped without a
  review, which the paper warns breaks the guarantee (shown, never offered);
* ``clean``: the reference, calibrated on the calibration inliers alone (every outlier known).

False-positive rate (test inliers with ``p <= alpha``) and power (test outliers flagged) at
alpha in {0.01, 0.05, 0.1}.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/conformal/contaminated.py --help
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from benchmarks._common import ADBENCH_DIR
from benchmarks._common.adbench import informative_columns
from skood import GaussianMahalanobis
from skood.conformal import ConformalDetector

HERE = Path(__file__).resolve().parent
ALPHAS = (0.01, 0.05, 0.1)
SHARES = (0.01, 0.05, 0.1)
METHODS = ("clean", "plain", "label_trim", "naive_trim")
N_TRAIN, N_CAL, N_TEST_IN, N_TEST_OUT, BUDGET = 1000, 500, 1000, 100, 50
REAL = ("27_PageBlocks", "23_mammography", "19_landsat")


def synthetic(rng):
    """Inliers N(0, I_10); outliers shifted by 1.2 in every coordinate (moderately hard)."""
    return rng.normal(size=(20_000, 10)), rng.normal(size=(5_000, 10)) + 1.2


def real(name):
    data = np.load(ADBENCH_DIR / f"{name}.npz")
    X, y = data["X"].astype(np.float64), data["y"].astype(int)
    X = X[:, informative_columns(X)]
    return X[y == 0], X[y == 1]


def one_repetition(inliers, outliers, share, rng):
    """Rates per (method, alpha) for one draw: ``{(method, alpha): (fpr, power)}``."""
    n_bad = round(share * N_CAL)
    need_in = N_TRAIN + (N_CAL - n_bad) + N_TEST_IN
    rows_in = rng.choice(len(inliers), size=need_in, replace=False)
    rows_out = rng.choice(len(outliers), size=n_bad + N_TEST_OUT, replace=False)
    train = inliers[rows_in[:N_TRAIN]]
    cal_in = inliers[rows_in[N_TRAIN : N_TRAIN + N_CAL - n_bad]]
    test_in = inliers[rows_in[N_TRAIN + N_CAL - n_bad :]]
    cal_out, test_out = outliers[rows_out[:n_bad]], outliers[rows_out[n_bad:]]
    calibration = np.r_[cal_in, cal_out]
    is_outlier = np.r_[np.zeros(len(cal_in), bool), np.ones(n_bad, bool)]
    model = make_pipeline(StandardScaler(), GaussianMahalanobis(offset_cv=None)).fit(train)
    frozen = FrozenEstimator(model)
    det = ConformalDetector(frozen, alpha=0.1, labeling_budget=BUDGET).fit(calibration)
    clean = ConformalDetector(frozen, alpha=0.1).fit(cal_in)
    p_in, p_out = {}, {}
    p_in["clean"], p_out["clean"] = clean.score_samples(test_in), clean.score_samples(test_out)
    p_in["plain"], p_out["plain"] = det.score_samples(test_in), det.score_samples(test_out)
    det.trim_calibration(is_outlier[det.review_rows_])
    p_in["label_trim"], p_out["label_trim"] = (
        det.score_samples(test_in),
        det.score_samples(test_out),
    )
    det.trim_calibration(np.ones(BUDGET, dtype=bool))
    p_in["naive_trim"], p_out["naive_trim"] = (
        det.score_samples(test_in),
        det.score_samples(test_out),
    )
    return {
        (m, a): (float(np.mean(p_in[m] <= a)), float(np.mean(p_out[m] <= a)))
        for m in METHODS
        for a in ALPHAS
    }


def run(repetitions, data_sets):
    rows = []
    for data_name in data_sets:
        rng = np.random.default_rng(0)
        inliers, outliers = synthetic(rng) if data_name == "synthetic" else real(data_name)
        for share in SHARES:
            start = time.perf_counter()
            rates = {key: [] for key in ((m, a) for m in METHODS for a in ALPHAS)}
            for _ in range(repetitions):
                for key, value in one_repetition(inliers, outliers, share, rng).items():
                    rates[key].append(value)
            took = time.perf_counter() - start
            for (method, alpha), values in rates.items():
                values = np.asarray(values)
                fpr, power = values[:, 0], values[:, 1]
                rows.append(
                    {
                        "data": data_name,
                        "share": share,
                        "method": method,
                        "alpha": alpha,
                        "fpr": fpr.mean(),
                        "fpr_se": fpr.std(ddof=1) / np.sqrt(fpr.size),
                        "power": power.mean(),
                        "power_se": power.std(ddof=1) / np.sqrt(power.size),
                        "repetitions": repetitions,
                    }
                )
            print(
                f"{data_name} share={share}: {repetitions} repetitions in {took:.0f} s", flush=True
            )
    return rows


def report(rows, out_md, out_png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = []
    for data_name in dict.fromkeys(r["data"] for r in rows):
        lines += [
            f"### {data_name}",
            "",
            "| outliers in calibration | alpha | "
            + " | ".join(f"{m} FPR / power" for m in METHODS)
            + " |",
            "|---|---|" + "---|" * len(METHODS),
        ]
        for share in SHARES:
            for alpha in ALPHAS:
                cells = []
                for method in METHODS:
                    (r,) = [
                        r
                        for r in rows
                        if r["data"] == data_name
                        and r["share"] == share
                        and r["alpha"] == alpha
                        and r["method"] == method
                    ]
                    flag = " **over**" if r["fpr"] > alpha + 3 * r["fpr_se"] else ""
                    cells.append(f"{r['fpr']:.4f}{flag} / {r['power']:.3f}")
                lines.append(f"| {share:.0%} | {alpha} | " + " | ".join(cells) + " |")
        lines.append("")
    Path(out_md).write_text("\n".join(lines) + "\n")
    data_sets = list(dict.fromkeys(r["data"] for r in rows))
    fig, axes = plt.subplots(2, len(data_sets), figsize=(4.2 * len(data_sets), 6.4), squeeze=False)
    colours = {"clean": "0.4", "plain": "C0", "label_trim": "C2", "naive_trim": "C3"}
    alpha = 0.05
    for j, data_name in enumerate(data_sets):
        for method in METHODS:
            sel = [
                r
                for r in rows
                if r["data"] == data_name and r["method"] == method and r["alpha"] == alpha
            ]
            shares = [100 * r["share"] for r in sel]
            axes[0, j].errorbar(
                shares,
                [r["fpr"] for r in sel],
                yerr=[2 * r["fpr_se"] for r in sel],
                marker="o",
                color=colours[method],
                label=method.replace("_", "-"),
                capsize=3,
            )
            axes[1, j].plot(shares, [r["power"] for r in sel], marker="o", color=colours[method])
        axes[0, j].axhline(alpha, color="k", lw=0.8, ls="--")
        axes[0, j].set_title(data_name)
        axes[1, j].set_xlabel("outliers among the calibration rows (%)")
    axes[0, 0].set_ylabel(f"false-positive rate at alpha = {alpha}")
    axes[1, 0].set_ylabel("power")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=1000)
    parser.add_argument("--data", nargs="+", default=["synthetic", *REAL])
    parser.add_argument("--out", default=str(HERE / "contaminated"))
    args = parser.parse_args()
    start = time.perf_counter()
    rows = run(args.repetitions, args.data)
    import csv

    with open(f"{args.out}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report(rows, f"{args.out}_table.md", f"{args.out}.png")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
