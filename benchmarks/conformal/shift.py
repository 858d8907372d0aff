"""Weighted conformal p-values + WCS under covariate shift (issue 35, item 3): FDR, FPR, power.

Jin and Candès (Biometrika 2025, arXiv:2307.09291). The batch's inliers follow ``Q``, the
calibration inliers ``P``, ``dQ/dP = w`` known here by construction. Per repetition a fresh
calibration set (``N_CAL`` rows from ``P``) and a fresh batch (``M`` rows: ``M_OUT`` outliers and
``M - M_OUT`` inliers from ``Q``) are drawn and scored by ONE detector fitted once per data set on
separate inliers from ``P`` (so every rate is conditional on that fit, which the guarantees
allow). Methods, all at ``ALPHA``:

* ``unweighted_bh``: split-conformal p-values + Benjamini–Hochberg, exactly
  ``skood.ConformalDetector(fdr=True).predict`` on these calibration rows
  (``benjamini_hochberg(conformal_p_values(...))``); ``unweighted_level``: ``p <= alpha``.
* ``wcs_<pruning>`` with the true ``w``; ``wbh``: BH on the same weighted p-values;
  ``weighted_level``: weighted ``p <= alpha`` (a per-row false-positive rate).
* ``wcs_lr`` / ``wbh_lr``: ``w`` estimated on each batch by
  ``skood.shift.estimate_likelihood_ratio`` (standardised logistic regression, the default);
  ``wcs_hgb`` / ``wbh_hgb``: by ``HistGradientBoostingClassifier()`` (first ``HGB_REPS``
  repetitions only: 0.3 s a fit).
* ``wcs_w^0.5`` / ``wcs_w^1.5`` / ``wcs_w^-1``: WCS with a misestimated ``w`` (half the shift,
  1.5 times it, the opposite direction).

Data sets:

* ``synthetic``: ``P = N(0, I_5)``, ``Q = N(theta, I_5)`` with ``theta = (1, 0, 0, 0, 0)``, so
  ``w(x) = exp(theta . x)`` (up to a constant); outliers ``N(0, I_5) + (0, 4, 0, 0, 0)`` (``w``
  about 1 there, the detector sees them); detector ``EllipticEnvelope`` fitted on 2,000 rows of
  ``P``.
* ``23_mammography`` and ``31_satimage-2`` (ADBench): the normals are standardised and split in
  half: a training half (``IsolationForest(random_state=0)`` fitted on it) and a pool. ``P`` is
  the pool's empirical distribution: calibration rows are drawn from the pool uniformly with
  replacement; the batch's inliers are drawn from the pool with replacement with probability
  proportional to ``w(x) = exp(GAMMA z(x))``, ``z`` the standardised pool column most correlated
  with the detector's anomaly score (so ``Q`` favours rows the detector scores lower, the
  harmful direction, and ``dQ/dP = w / mean_pool(w)`` exactly); outliers are drawn uniformly
  with replacement from the set's anomalies.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/conformal/shift.py            # full study
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/conformal/shift.py --reps 50  # smoke run
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest

from benchmarks._common import ADBENCH_DIR
from skood.conformal import benjamini_hochberg, conformal_p_values
from skood.datasets import load_adbench
from skood.shift import (
    estimate_likelihood_ratio,
    weighted_conformal_p_values,
    weighted_conformal_selection,
)

HERE = Path(__file__).resolve().parent
ALPHA, N_CAL, M, M_OUT, GAMMA, HGB_REPS = 0.1, 500, 200, 20, 0.5, 200
REAL = ("23_mammography", "31_satimage-2")
FDR_METHODS = (
    "unweighted_bh",
    "wcs_heterogeneous",
    "wcs_homogeneous",
    "wcs_deterministic",
    "wbh",
    "wcs_lr",
    "wbh_lr",
    "wcs_hgb",
    "wbh_hgb",
    "wcs_w^0.5",
    "wcs_w^1.5",
    "wcs_w^-1",
)
LEVEL_METHODS = ("unweighted_level", "weighted_level")


class Synthetic:
    name = "synthetic"

    def __init__(self, rng):
        self.theta = np.r_[1.0, np.zeros(4)]
        self.detector = EllipticEnvelope(random_state=0).fit(rng.normal(size=(2000, 5)))

    def w(self, X):
        return np.exp(X @ self.theta)

    def draw(self, rng):
        cal = rng.normal(size=(N_CAL, 5))
        inliers = rng.normal(size=(M - M_OUT, 5)) + self.theta
        outliers = rng.normal(size=(M_OUT, 5)) + np.r_[0.0, 4.0, 0, 0, 0]
        return cal, np.vstack([inliers, outliers])


class Real:
    def __init__(self, name, rng):
        self.name = name
        X, y = load_adbench(ADBENCH_DIR / f"{name}.npz")
        normals, self.anomalies = X[y == 1], X[y == -1]  # skood: -1 marks an anomaly
        mean, std = normals.mean(0), normals.std(0) + 1e-12
        normals, self.anomalies = (normals - mean) / std, (self.anomalies - mean) / std
        perm = rng.permutation(len(normals))
        train, self.pool = normals[perm[: len(perm) // 2]], normals[perm[len(perm) // 2 :]]
        self.detector = IsolationForest(random_state=0).fit(train)
        anomaly_score = -self.detector.score_samples(self.pool)
        corr = [abs(np.corrcoef(c, anomaly_score)[0, 1]) for c in self.pool.T]
        self.column = int(np.nanargmax(corr))
        sign = np.sign(np.corrcoef(self.pool[:, self.column], anomaly_score)[0, 1])
        self.sign, self.corr = sign, float(corr[self.column])
        self.w_pool = self.w(self.pool)
        self.q = self.w_pool / self.w_pool.sum()

    def w(self, X):
        # the pool's standardisation of the column is 0 / 1 up to the split's noise: exact
        # enough, and w is exactly dQ/dP by construction whatever the constant
        return np.exp(GAMMA * self.sign * X[:, self.column])

    def draw(self, rng):
        cal = self.pool[rng.integers(len(self.pool), size=N_CAL)]
        inliers = self.pool[rng.choice(len(self.pool), size=M - M_OUT, p=self.q)]
        outliers = self.anomalies[rng.integers(len(self.anomalies), size=M_OUT)]
        return cal, np.vstack([inliers, outliers])


def one_rep(data, rng, rep):
    cal, X = data.draw(rng)
    is_in = np.r_[np.ones(M - M_OUT, dtype=bool), np.zeros(M_OUT, dtype=bool)]
    s_cal, s = data.detector.score_samples(cal), data.detector.score_samples(X)
    flags, levels = {}, {}
    p_un = conformal_p_values(s_cal, s)
    flags["unweighted_bh"] = benjamini_hochberg(p_un, ALPHA)
    levels["unweighted_level"] = p_un <= ALPHA

    def weighted(cal_w, w, tag, prunings=("heterogeneous",)):
        # one RandomState in turn: xi never replays U (see weighted_conformal_selection)
        r = np.random.RandomState(rng.integers(1 << 31))
        p = weighted_conformal_p_values(s_cal, s, cal_w, w, random_state=r)
        for pruning in prunings:
            key = f"wcs_{pruning}" if tag == "" else f"wcs{tag}"
            flags[key] = weighted_conformal_selection(
                p, s_cal, s, cal_w, w, ALPHA, pruning=pruning, random_state=r
            )
        flags[f"wbh{tag}"] = benjamini_hochberg(p, ALPHA)
        return p

    p = weighted(data.w(cal), data.w(X), "", ("heterogeneous", "homogeneous", "deterministic"))
    levels["weighted_level"] = p <= ALPHA
    seed = int(rng.integers(1 << 31))
    weighted(*estimate_likelihood_ratio(cal, X, random_state=seed), "_lr")
    if rep < HGB_REPS:
        hgb = HistGradientBoostingClassifier()
        weighted(*estimate_likelihood_ratio(cal, X, classifier=hgb, random_state=seed), "_hgb")
    for power, tag in ((0.5, "^0.5"), (1.5, "^1.5"), (-1.0, "^-1")):
        r = np.random.RandomState(rng.integers(1 << 31))
        cal_w, w = data.w(cal) ** power, data.w(X) ** power
        p_mis = weighted_conformal_p_values(s_cal, s, cal_w, w, random_state=r)
        flags[f"wcs_w{tag}"] = weighted_conformal_selection(
            p_mis, s_cal, s, cal_w, w, ALPHA, random_state=r
        )
    row = {}
    for k, f in flags.items():
        row[k] = ((f & is_in).sum() / max(f.sum(), 1), f[~is_in].mean())
    for k, f in levels.items():
        row[k] = (f[is_in].mean(), f[~is_in].mean())
    return row


def summarise(rows):
    out = {}
    for k in (*FDR_METHODS, *LEVEL_METHODS):
        vals = np.array([r[k] for r in rows if k in r])
        out[k] = {
            "reps": len(vals),
            "rate": vals[:, 0].mean(),
            "se": vals[:, 0].std(ddof=1) / np.sqrt(len(vals)),
            "power": vals[:, 1].mean(),
        }
    return out


def wcs_timing():
    rng = np.random.default_rng(0)
    times = {}
    for m in (1000, 5000):
        cal, s = rng.normal(size=N_CAL), rng.normal(size=m)
        p = weighted_conformal_p_values(cal, s, np.ones(N_CAL), np.ones(m), random_state=0)
        t0 = time.perf_counter()
        weighted_conformal_selection(p, cal, s, np.ones(N_CAL), np.ones(m), ALPHA, random_state=1)
        times[m] = time.perf_counter() - t0
    return times


def report(results, meta):
    lines = [
        "# Weighted conformal p-values + WCS under covariate shift: recorded run",
        "",
        "Generated by `benchmarks/conformal/shift.py`; the setup is in its docstring. ",
        f"Command: `{meta['command']}`; wall time {meta['wall_s']:.0f} s on {meta['machine']}.",
        "",
        f"alpha = {ALPHA}; per repetition {N_CAL} calibration rows from P and a batch of {M} "
        f"rows ({M_OUT} outliers, {M - M_OUT} inliers from Q). FDR = mean false discovery "
        "proportion over repetitions (+- its Monte Carlo standard error); FPR = mean share of "
        "the batch's inliers flagged (level tests); power = mean share of the outliers flagged. "
        f"Within the bound: rate <= alpha + 2 SE = the claim holds within Monte Carlo error.",
        "",
    ]
    for name, res in results.items():
        extra = meta["datasets"][name]
        lines += [f"## {name}", "", extra, ""]
        lines += ["| method | kind | reps | rate | ± SE | within alpha + 2 SE | power |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for k in (*FDR_METHODS, *LEVEL_METHODS):
            r = res[k]
            kind = "FPR" if k in LEVEL_METHODS else "FDR"
            ok = "yes" if r["rate"] <= ALPHA + 2 * r["se"] else "**no**"
            lines.append(
                f"| `{k}` | {kind} | {r['reps']} | {r['rate']:.4f} | {r['se']:.4f} | {ok} | "
                f"{r['power']:.3f} |"
            )
        lines.append("")
    t = meta["wcs_seconds"]
    lines += [
        "## Cost of WCS",
        "",
        f"`weighted_conformal_selection` on one batch, {N_CAL} calibration rows: "
        + ", ".join(f"m = {m}: {s:.3f} s" for m, s in t.items())
        + " (O(m^2)).",
        "",
    ]
    (HERE / "shift.md").write_text("\n".join(lines))


def plot(results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("unweighted_bh", "wcs_heterogeneous", "wbh", "wcs_lr", "wcs_hgb", "wcs_w^0.5")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.arange(len(keys))
    for i, (name, res) in enumerate(results.items()):
        off = (i - 1) * 0.27
        rate = [res[k]["rate"] for k in keys]
        se = [2 * res[k]["se"] for k in keys]
        axes[0].bar(x + off, rate, 0.27, yerr=se, label=name)
        axes[1].bar(x + off, [res[k]["power"] for k in keys], 0.27, label=name)
    axes[0].axhline(ALPHA, color="k", ls="--", lw=1, label=f"alpha = {ALPHA}")
    axes[0].set_ylabel("realised FDR (± 2 SE)")
    axes[1].set_ylabel("power")
    for ax in axes:
        ax.set_xticks(x, keys, rotation=30, ha="right", fontsize=8)
    axes[0].legend(fontsize=8)
    fig.suptitle("Covariate-shifted inliers: unweighted BH vs weighted conformal + WCS")
    fig.tight_layout()
    fig.savefig(HERE / "shift.png", dpi=110)


def main():
    global HGB_REPS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000)
    args = parser.parse_args()
    HGB_REPS = min(HGB_REPS, args.reps)
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    sets = [Synthetic(rng)] + [Real(name, rng) for name in REAL]
    results, meta = {}, {"datasets": {}}
    for data in sets:
        t1 = time.perf_counter()
        rows = [one_rep(data, rng, rep) for rep in range(args.reps)]
        results[data.name] = summarise(rows)
        if isinstance(data, Real):
            meta["datasets"][data.name] = (
                f"{len(data.pool)} pool normals, {len(data.anomalies)} anomalies; shift on "
                f"column {data.column} (|corr| with the anomaly score {data.corr:.2f}), "
                f"w = exp({GAMMA:g} * {data.sign:+.0f} * z); max w / mean w in the pool "
                f"{data.w_pool.max() / data.w_pool.mean():.1f}. "
                f"{time.perf_counter() - t1:.0f} s."
            )
        else:
            meta["datasets"][data.name] = f"{time.perf_counter() - t1:.0f} s."
        print(data.name, json.dumps(results[data.name], default=float)[:300], flush=True)
    meta["wcs_seconds"] = wcs_timing()
    meta["wall_s"] = time.perf_counter() - t0
    meta["command"] = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/conformal/shift.py" + (
        f" --reps {args.reps}" if args.reps != 1000 else ""
    )
    meta["machine"] = f"{platform.machine()} {os.cpu_count()} cores (shared), one thread"
    report(results, meta)
    plot(results)
    (HERE / "shift_results.json").write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
