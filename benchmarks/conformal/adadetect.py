"""AdaDetect (Marandon, Lei, Mary & Roquain, Ann. Statist. 2024): realised FDR and power, Monte Carlo.

Issue 35, item 1. Per repetition a fresh null sample (``n`` inliers) and a fresh test batch
(``m`` rows, ``m1`` of them outliers) are drawn; every method sees the same rows:

* ``adadetect``: ``skood.adadetect.AdaDetect()`` (defaults: random forest, 100 trees of depth 5,
  calibration_fraction 0.3), BH at ``alpha``;
* ``adadetect_adaptive``: the same p-values (the same classifier fit), BH at ``alpha / pi0``,
  ``pi0`` the paper's Storey estimator (``skood.conformal.storey_null_proportion``, lambda = 1/2);
* ``conformal``: ``ConformalDetector(GaussianMahalanobis(), fdr=True, calibration_fraction=0.3)``,
  split-conformal p-values of a one-class score fixed on the training part + BH (Bates et al.
  2023): the paper's non-adaptive baseline;
* ``conformal_adaptive``: its p-values, BH at ``alpha / pi0`` (same estimator).

Settings (``alpha = 0.1``):

* ``synthetic``: inliers N(0, I_20); outliers the same shifted by 2.5 in 2 of the 20 coordinates
  (a direction a one-class Mahalanobis score dilutes among 20);
* ``synthetic_null``: the same with no outlier in the batch (``m1 = 0``): FDR = P(any flag), the
  case where an estimate of pi0 above 1 matters;
* ``cardio``, ``pageblocks``: ADBench ``7_Cardiotocography`` and ``27_PageBlocks`` (raw features,
  no scaling: the forest and the Gaussian are invariant to it); the null sample and the batch's
  inliers are drawn without replacement from the normals, the batch's outliers from the anomalies.

``choose``: the default classifier and calibration fraction, measured on fewer repetitions.
``storey``: capped (p > lambda, at most 1: skood's first version) vs uncapped (the paper's, now
``skood.conformal.storey_null_proportion``) Storey
estimator under the global null, with conformal p-values of uniform scores (no classifier).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/conformal/adadetect.py run
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/conformal/adadetect.py report
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
import argparse
import csv
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmarks._common import ADBENCH_DIR
from skood import GaussianMahalanobis
from skood.adadetect import AdaDetect
from skood.conformal import ConformalDetector, benjamini_hochberg, storey_null_proportion

HERE = Path(__file__).resolve().parent
ALPHA = 0.1
N_NULL, M, M1 = 600, 300, 60  # null sample, batch, outliers in the batch (20 %)
METHODS = ("adadetect", "adadetect_adaptive", "conformal", "conformal_adaptive")
SETTINGS = ("synthetic", "synthetic_null", "cardio", "pageblocks")
REAL = {"cardio": "7_Cardiotocography", "pageblocks": "27_PageBlocks"}


def synthetic(rng, m1=M1, d=20, shift=2.5):
    null = rng.normal(size=(N_NULL, d))
    batch = rng.normal(size=(M, d))
    batch[:m1, :2] += shift
    return null, batch, np.arange(M) < m1


def real_drawer(name):
    data = np.load(ADBENCH_DIR / f"{name}.npz")
    X, y = data["X"].astype(np.float64), data["y"].astype(bool)
    normals, anomalies = X[~y], X[y]

    def draw(rng, m1=M1):
        rows = rng.permutation(len(normals))
        out = rng.choice(len(anomalies), m1, replace=False)
        batch = np.r_[anomalies[out], normals[rows[N_NULL : N_NULL + M - m1]]]
        return normals[rows[:N_NULL]], batch, np.arange(M) < m1

    return draw


def drawer(setting):
    if setting == "synthetic":
        return synthetic
    if setting == "synthetic_null":
        return lambda rng: synthetic(rng, m1=0)
    return real_drawer(REAL[setting])


def rates(flags, is_outlier):
    n_flag = int(flags.sum())
    fdp = float((flags & ~is_outlier).sum() / max(n_flag, 1))
    power = float((flags & is_outlier).sum() / is_outlier.sum()) if is_outlier.any() else np.nan
    return fdp, power


def one_rep(setting, rep):
    rng = np.random.default_rng([rep, SETTINGS.index(setting)])
    null, batch, is_outlier = drawer(setting)(rng)
    ada = AdaDetect(alpha=ALPHA, adaptive=True, random_state=rep).fit(null).detect(batch)
    assert ada.level == ALPHA / storey_null_proportion(ada.p_values)
    conf = ConformalDetector(
        GaussianMahalanobis(), alpha=ALPHA, fdr=True, calibration_fraction=0.3, random_state=rep
    ).fit(null)
    with warnings.catch_warnings():  # BH cannot flag a lone outlier here: known, not the point
        warnings.simplefilter("ignore")
        p_conf = conf.score_samples(batch)
    flags = {
        "adadetect": benjamini_hochberg(ada.p_values, ALPHA),  # = AdaDetect().predict
        "adadetect_adaptive": ada.outlier,
        "conformal": benjamini_hochberg(p_conf, ALPHA),
        "conformal_adaptive": benjamini_hochberg(p_conf, ALPHA / storey_null_proportion(p_conf)),
    }
    assert np.array_equal(flags["conformal"], conf.predict(batch) == -1), (
        "BH on the p-values must be ConformalDetector(fdr=True).predict"
    )
    return [(m, *rates(flags[m], is_outlier)) for m in METHODS]


def run(args):
    out = HERE / "adadetect_results.csv"
    t0 = time.time()
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["setting", "rep", "method", "fdp", "power"])
        for setting in args.settings:
            ts = time.time()
            for rep in range(args.reps):
                for method, fdp, power in one_rep(setting, rep):
                    writer.writerow([setting, rep, method, f"{fdp:.6g}", f"{power:.6g}"])
            print(f"{setting}: {args.reps} reps, {time.time() - ts:.0f} s", flush=True)
    print(f"main study: {time.time() - t0:.0f} s", flush=True)
    choose(args.choose_reps)
    storey(args.storey_reps)
    print(f"total: {time.time() - t0:.0f} s on {platform.processor() or platform.machine()}")


CANDIDATES = {
    "rf depth 5 (default)": lambda: None,
    "rf min_samples_leaf 5": lambda: RandomForestClassifier(100, min_samples_leaf=5, n_jobs=1),
    "rf full depth": lambda: RandomForestClassifier(100, n_jobs=1),
    "hist gradient boosting": lambda: HistGradientBoostingClassifier(early_stopping=False),
    "logistic regression": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
}


def choose(reps):
    """Power (and FDR) of candidate classifiers and calibration fractions, fewer repetitions."""
    rows = []
    for setting in ("synthetic", "cardio", "pageblocks"):
        draw = drawer(setting)
        configs = [(name, make, 0.3) for name, make in CANDIDATES.items()]
        configs += [("rf depth 5 (default)", lambda: None, f) for f in (0.2, 0.5, 0.7)]
        for name, make, fraction in configs:
            fdp, power, ts = [], [], time.time()
            for rep in range(reps):
                null, batch, is_outlier = draw(np.random.default_rng([rep, 99]))
                det = AdaDetect(
                    make(), alpha=ALPHA, calibration_fraction=fraction, random_state=rep
                )
                f, p = rates(det.fit(null).detect(batch).outlier, is_outlier)
                fdp.append(f)
                power.append(p)
            rows.append(
                [setting, name, fraction, np.mean(fdp), np.mean(power),
                 np.std(power, ddof=1) / np.sqrt(reps), (time.time() - ts) / reps]
            )  # fmt: skip
            print(*rows[-1], flush=True)
    with open(HERE / "adadetect_choose.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["setting", "classifier", "calibration_fraction", "fdr", "power",
                         "power_se", "seconds_per_batch"])  # fmt: skip
        writer.writerows(rows)


def storey(reps):
    """FDR under the global null: BH at alpha / pi0, pi0 capped at 1 or not (conformal p-values)."""
    rng = np.random.default_rng(2024)
    rows = []
    for n, m in ((2000, 10), (1000, 20), (1000, 100)):
        hits = {"plain BH": 0, "capped (first version)": 0, "uncapped (paper)": 0}
        for _ in range(reps):
            calibration = np.sort(rng.random(n))
            p = (1.0 + np.searchsorted(calibration, rng.random(m))) / (n + 1.0)
            hits["plain BH"] += benjamini_hochberg(p, ALPHA).any()
            capped = _capped_storey(p, 0.5)
            hits["capped (first version)"] += benjamini_hochberg(
                p, ALPHA, null_proportion=capped
            ).any()
            hits["uncapped (paper)"] += benjamini_hochberg(
                p, ALPHA / storey_null_proportion(p)
            ).any()
        for name, k in hits.items():
            rows.append([n, m, name, k / reps, np.sqrt(ALPHA * (1 - ALPHA) / reps)])
            print(*rows[-1], flush=True)
    with open(HERE / "adadetect_storey.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["n_calibration", "m", "procedure", "fdr", "se_at_alpha"])
        writer.writerows(rows)


def report(_args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(HERE / "adadetect_results.csv")))
    table = ["| setting | method | reps | FDR (mean FDP) | ±SE | bound α + 3 SE holds | power | ±SE |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    summary = {}
    for setting in SETTINGS:
        for method in METHODS:
            sel = [r for r in rows if r["setting"] == setting and r["method"] == method]
            if not sel:
                continue
            fdp = np.array([float(r["fdp"]) for r in sel])
            power = np.array([float(r["power"]) for r in sel])
            se = fdp.std(ddof=1) / np.sqrt(fdp.size)
            has_power = not np.all(np.isnan(power))
            pw = np.nanmean(power) if has_power else np.nan
            pse = np.nanstd(power, ddof=1) / np.sqrt(fdp.size) if has_power else np.nan
            summary[setting, method] = (fdp.mean(), se, pw, pse)
            ok = "yes" if fdp.mean() <= ALPHA + 3 * se else "**no**"
            pw_s = f"{pw:.3f} | {pse:.3f}" if has_power else "n/a | n/a"
            table.append(
                f"| {setting} | {method} | {fdp.size} | {fdp.mean():.4f} | {se:.4f} | {ok} | {pw_s} |"
            )
    print("\n".join(table))
    choose_rows = list(csv.DictReader(open(HERE / "adadetect_choose.csv")))
    print("\n| setting | classifier | calibration_fraction | FDR | power | ±SE | s / batch |")
    print("|---|---|---|---|---|---|---|")
    for r in choose_rows:
        print(f"| {r['setting']} | {r['classifier']} | {r['calibration_fraction']} | "
              f"{float(r['fdr']):.3f} | {float(r['power']):.3f} | {float(r['power_se']):.3f} | "
              f"{float(r['seconds_per_batch']):.2f} |")  # fmt: skip
    storey_rows = list(csv.DictReader(open(HERE / "adadetect_storey.csv")))
    print("\n| n_calibration | m | procedure | FDR = P(any flag) | SE at α |")
    print("|---|---|---|---|---|")
    for r in storey_rows:
        print(f"| {r['n_calibration']} | {r['m']} | {r['procedure']} | {float(r['fdr']):.4f} | "
              f"{float(r['se_at_alpha']):.4f} |")  # fmt: skip

    fig, (ax_fdr, ax_power) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.2
    labels = {
        "adadetect": "AdaDetect",
        "adadetect_adaptive": "AdaDetect, Storey-adaptive",
        "conformal": "split conformal (Gaussian) + BH",
        "conformal_adaptive": "split conformal, Storey-adaptive",
    }
    x = np.arange(len(SETTINGS))
    for i, method in enumerate(METHODS):
        vals = [summary.get((s, method), (np.nan,) * 4) for s in SETTINGS]
        ax_fdr.bar(x + (i - 1.5) * width, [v[0] for v in vals], width,
                   yerr=[3 * v[1] for v in vals], label=labels[method])  # fmt: skip
        ax_power.bar(x + (i - 1.5) * width, [v[2] for v in vals], width,
                     yerr=[3 * v[3] for v in vals], label=labels[method])  # fmt: skip
    ax_fdr.axhline(ALPHA, color="k", ls="--", lw=1, label="alpha = 0.1")
    for ax, title in ((ax_fdr, "realised FDR (mean FDP, ±3 SE)"), (ax_power, "power (±3 SE)")):
        ax.set_xticks(x, SETTINGS)
        ax.set_title(title)
    ax_fdr.set_ylim(0, 0.14)  # room for the legend above the bars
    ax_fdr.legend(fontsize=7, loc="upper right", ncol=2)
    n_reps = len({r["rep"] for r in rows})
    fig.suptitle(f"AdaDetect vs split conformal + BH, {n_reps} repetitions per setting, "
                 f"n = {N_NULL} inliers, batch m = {M} ({M1} outliers)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(HERE / "adadetect.png", dpi=110)


def _capped_storey(p, threshold):
    """Storey's estimate as skood had it before this study: ``p > lambda``, capped at 1."""
    return min(1.0, (1.0 + np.count_nonzero(p > threshold)) / (p.size * (1.0 - threshold)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--reps", type=int, default=1000)
    p_run.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    p_run.add_argument("--choose-reps", type=int, default=40)
    p_run.add_argument("--storey-reps", type=int, default=20000)
    p_run.set_defaults(func=run)
    sub.add_parser("report").set_defaults(func=report)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
