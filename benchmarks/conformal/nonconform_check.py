"""skood's conformal p-values and FDR control against an independent implementation, nonconform.

Issue 35, item 5. nonconform (Oliver Hennhoefer; conformal anomaly detection) is not installed
into skood's environment: its source is put on ``sys.path`` from a directory given by
``--nonconform`` (made with ``git archive`` from its repository, see nonconform_check.md).

Checks, all printed as Markdown tables:

1. p-values on the *same* scores: skood's ``conformal_p_values`` against nonconform's
   ``Empirical(tie_break="classical")`` (``(1 + #{calibration anomaly score >= test score}) /
   (n + 1)``; nonconform's scores are anomaly scores, so skood's are negated for it), on
   continuous float64, integer (tied), 1e7 + integer and 1e10 + integer float64 scores and on
   float32 network scores (energy, max-softmax); then how much each library's p-values move when
   the float32 test scores are recomputed in another batch size.
2. Benjamini-Hochberg rejections at alpha in {0.05, 0.1, 0.2}: skood's ``benjamini_hochberg``,
   nonconform's rule (``ConformalDetector.select``: scipy's ``false_discovery_control(p) <=
   alpha``) and a textbook step-up written here; Storey-adaptive BH (skood only: nonconform has
   none) against the formula written here.
3. End to end: ``skood.ConformalDetector(IsolationForest(random_state=0), random_state=s)`` and
   nonconform's ``ConformalDetector`` (``Split`` strategy, detached ``calibrate``) on the same
   training and calibration rows, flags per row, on synthetic data and two ADBench sets.
4. Monte Carlo: realised false-positive rate (p <= alpha) and FDR (BH) of both, side by side.
5. nonconform's ``conformal_fdp_upper_bound`` on one example beside the realised FDP.

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/conformal/nonconform_check.py \\
        --nonconform /tmp/nonconform_src
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ALPHAS = (0.05, 0.1, 0.2)
SHIFT = 4.0  # Monte Carlo outliers: mean shift, in standard deviations
ADBENCH = Path("/work/shared/data/adbench")
MIRROR = "/work/.mirror/OliverHennhoefer+nonconform/repo"


# -- helpers ------------------------------------------------------------------------------------
def table(header, rows):
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        out.append("| " + " | ".join(str(v) for v in row) + " |")
    print("\n".join(out) + "\n", flush=True)


def fmt(x, digits=4):
    return f"{x:.{digits}g}"


def nc_p_values(cal, test):
    """nonconform's classical p-values of skood scores (higher = more normal): negate both."""
    from nonconform.scoring import Empirical

    return Empirical(tie_break="classical").compute_p_values(-np.asarray(test), -np.asarray(cal))


def nc_bh(p_values, alpha):
    """nonconform's unweighted selection rule, as in ``ConformalDetector.select`` (detector.py)."""
    from scipy.stats import false_discovery_control

    return false_discovery_control(np.asarray(p_values, dtype=float), method="bh") <= alpha


def bh_textbook(p_values, alpha):
    """Step-up BH written out: reject the k smallest, k = max{j : p_(j) <= alpha j / m}."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    below = np.flatnonzero(p[order] <= alpha * np.arange(1, m + 1) / m)
    reject = np.zeros(m, dtype=bool)
    if below.size:
        reject[order[: below[-1] + 1]] = True
    return reject


def storey_textbook(p_values, lam=0.5):
    """Storey's estimate with the finite-sample +1, counting p >= lambda, not capped at 1: the
    form with which adaptive BH controls the FDR of conformal p-values (Marandon et al. 2024)."""
    p = np.asarray(p_values, dtype=float)
    return (1.0 + np.sum(p >= lam)) / (p.size * (1.0 - lam))


def nonconform_version(path, mirror):
    import nonconform

    commit = "unknown (not a git checkout)"
    if mirror and Path(mirror).exists():
        try:
            commit = subprocess.run(
                ["git", "-C", mirror, "log", "-1", "--format=%H %cs %s"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return nonconform.__version__, commit, str(Path(nonconform.__file__).parent)


# -- 1 and 2: p-values and BH on the same scores --------------------------------------------------
def score_cases(rng):
    """(name, calibration scores, test scores, outlier mask) with skood's sign (higher = normal)."""
    n, m_in, m_out = 1000, 1800, 200
    out = np.r_[np.zeros(m_in, bool), np.ones(m_out, bool)]
    cases = []

    cal = rng.normal(size=n)
    test = np.r_[rng.normal(size=m_in), rng.normal(-3.0, 1.0, size=m_out)]
    test[:50] = cal[:50]  # exact duplicates of calibration scores
    cases.append(("(a) continuous float64", cal, test, out))

    cal_i = rng.integers(0, 10, size=n).astype(np.float64)
    test_i = np.r_[rng.integers(0, 10, size=m_in), rng.integers(0, 2, size=m_out)].astype(float)
    cases.append(("(b) integers 0..9 (float64)", cal_i, test_i, out))
    cases.append(("(c) 1e7 + integers 0..9 (float64)", 1e7 + cal_i, 1e7 + test_i, out))
    cases.append(("(e) 1e10 + integers 0..9 (float64)", 1e10 + cal_i, 1e10 + test_i, out))

    net = FloatNet(rng)
    x_cal, x_test = net.inliers(n), np.r_[net.inliers(m_in), net.outliers(m_out)]
    for kind in ("energy", "msp"):
        cal32 = net.scores(x_cal, kind)
        test32 = net.scores(x_test, kind)
        cases.append((f"(d) float32 {kind}", cal32, test32, out))
    return cases, net, x_cal, x_test


class FloatNet:
    """A random float32 linear "network": logits = x @ W, scores from the logits in float32.

    Scores computed in different batch sizes differ in the last bits (OpenBLAS's gemm and gemv
    sum in different orders), as a real network's do.
    """

    def __init__(self, rng, d=64, k=10, scale=1.0):
        self.rng, self.d = rng, d
        self.W = (rng.normal(size=(d, k)) * scale).astype(np.float32)
        self.mu = (rng.normal(size=d) * 0.5).astype(np.float32)

    def inliers(self, n):
        return (self.mu + self.rng.normal(size=(n, self.d))).astype(np.float32)

    def outliers(self, n):
        return (0.3 * self.rng.normal(size=(n, self.d))).astype(np.float32)

    def logits(self, x, batch=None):
        if batch is None:
            return x @ self.W
        return np.vstack([x[i : i + batch] @ self.W for i in range(0, len(x), batch)])

    def scores(self, x, kind, batch=None):
        z = self.logits(x, batch)
        top = z.max(axis=1, keepdims=True)
        e = np.exp(z - top)
        if kind == "energy":  # logsumexp: higher = more in-distribution
            return (top[:, 0] + np.log(e.sum(axis=1))).astype(np.float32)
        return (1.0 / e.sum(axis=1)).astype(np.float32)  # max softmax probability


def check_p_values(cases):
    from skood.base import tie_rtol
    from skood.conformal import benjamini_hochberg, conformal_p_values, storey_null_proportion

    print("## 1. p-values on the same scores\n")
    rows, bh_rows, storey_rows, smallest = [], [], [], []
    for name, cal, test, out in cases:
        p_sk = conformal_p_values(cal, test)
        p_sk0 = conformal_p_values(cal, test, rtol=0.0)
        p_nc = nc_p_values(cal, test)
        diff = p_sk - p_nc
        nd = int(np.sum(diff != 0))
        rtol = max(tie_rtol(np.asarray(cal).dtype), tie_rtol(np.asarray(test).dtype))
        rows.append(
            [
                name,
                np.asarray(cal).dtype,
                len(cal),
                len(test),
                len(np.unique(cal)),
                fmt(rtol, 2),
                f"{nd} / {len(test)}",
                fmt(np.max(np.abs(diff))),
                fmt(np.mean(diff)),
                "yes" if np.all(diff >= 0) else "NO",
                "/".join(str(int(np.sum((p_sk <= a) != (p_nc <= a)))) for a in ALPHAS),
                "yes" if np.array_equal(p_sk0, p_nc) else "NO",
            ]
        )
        if nd:
            i = int(np.flatnonzero(diff)[np.argmax(np.abs(diff[diff != 0]))])
            s = test[i]
            cal_sorted = np.sort(np.asarray(cal, dtype=np.float64))
            lo = np.searchsorted(cal_sorted, s, side="right")
            hi = np.searchsorted(cal_sorted, float(s) + rtol * abs(float(s)), side="right")
            between = cal_sorted[lo:hi]
            smallest.append(
                f"- {name}: test score {float(s)!r}; {hi - lo} calibration score(s) in "
                f"(s, s + {rtol:g} |s|] (e.g. {float(between[0])!r}) count as ties for skood, "
                f"not for nonconform: p = {p_sk[i]:.6g} (skood) vs {p_nc[i]:.6g} (nonconform)."
            )
        for alpha in ALPHAS:
            r_sk = benjamini_hochberg(p_sk, alpha)
            r_nc = nc_bh(p_nc, alpha)
            r_nc_on_sk = nc_bh(p_sk, alpha)
            r_tb = bh_textbook(p_sk, alpha)
            bh_rows.append(
                [
                    name,
                    alpha,
                    int(r_sk.sum()),
                    int(r_nc.sum()),
                    "yes" if np.array_equal(r_sk, r_nc) else f"NO ({int(np.sum(r_sk != r_nc))})",
                    "yes" if np.array_equal(r_sk, r_nc_on_sk) else "NO",
                    "yes" if np.array_equal(r_sk, r_tb) else "NO",
                    fmt(np.sum(r_sk & ~out) / max(1, r_sk.sum()), 3),
                ]
            )
            pi0 = storey_null_proportion(p_sk)
            r_st = benjamini_hochberg(p_sk, alpha, null_proportion=pi0)
            r_st_tb = bh_textbook(p_sk, alpha / storey_textbook(p_sk))
            storey_rows.append(
                [
                    name,
                    alpha,
                    fmt(pi0, 5),
                    fmt(storey_textbook(p_sk), 5),
                    fmt(np.sum(p_sk > 0.5) / (p_sk.size * 0.5), 5),
                    int(r_sk.sum()),
                    int(r_st.sum()),
                    "yes" if np.array_equal(r_st, r_st_tb) else "NO",
                ]
            )
    table(
        [
            "scores",
            "dtype",
            "n cal",
            "m test",
            "distinct cal",
            "skood rtol",
            "p differ",
            "max abs diff",
            "mean diff (skood - nc)",
            "skood >= nc",
            "level flags differ (0.05/0.1/0.2)",
            "skood rtol=0 == nc",
        ],
        rows,
    )
    if smallest:
        print("Largest difference per case:\n")
        print("\n".join(smallest) + "\n")
    print("Smallest examples (one calibration score, one test score):\n")
    tiny = []
    for label, cal, test in [
        ("float32, 5e-7 apart", np.float32([1.0]), np.float32([0.9999995])),
        ("float64, 1e10 and 1e10 + 1", np.array([1e10 + 1.0]), np.array([1e10])),
        ("float64, 1e7 and 1e7 + 1", np.array([1e7 + 1.0]), np.array([1e7])),
    ]:
        tiny.append(
            [
                label,
                repr(float(cal[0])),
                repr(float(test[0])),
                conformal_p_values(cal, test)[0],
                nc_p_values(cal, test)[0],
            ]
        )
    table(["case", "calibration", "test", "skood p", "nonconform p"], tiny)

    print("## 2. Benjamini-Hochberg on those p-values\n")
    print(
        "skood: `benjamini_hochberg(p_skood, alpha)`; nonconform: its `select` rule "
        "`false_discovery_control(p_nonconform, 'bh') <= alpha`; 'nc rule on skood p': the "
        "same rule on skood's p-values; 'textbook': step-up BH written here, on skood's p.\n"
    )
    table(
        [
            "scores",
            "alpha",
            "skood rejects",
            "nonconform rejects",
            "identical",
            "nc rule on skood p",
            "textbook",
            "FDP (skood)",
        ],
        bh_rows,
    )
    print(
        "Storey-adaptive BH (nonconform has no Storey / adaptive BH: skood against the formula "
        "written here, lambda = 0.5 with the +1; 'no +1' is the plain estimator, for scale):\n"
    )
    table(
        [
            "scores",
            "alpha",
            "skood pi0",
            "textbook pi0",
            "pi0 without +1",
            "BH rejects",
            "Storey-BH rejects",
            "== textbook",
        ],
        storey_rows,
    )


def check_batches(net, x_cal, x_test):
    """How far p-values move when float32 test scores come from another batch size."""
    from skood.conformal import conformal_p_values

    print("### 1(d) continued: float32 scores recomputed in another batch size\n")
    print(
        "Calibration scores computed in one batch of 1,000 rows; test scores in one batch of "
        f"{len(x_test)} rows (A) and row by row (B, batch 1); 'self' rescores the calibration "
        "rows themselves row by row (a row's p-value against its own calibration set: exact "
        "arithmetic would tie it with itself).\n"
    )
    rows = []
    for kind in ("energy", "msp", "energy - median (centred)"):
        base = kind.split()[0]
        cal = net.scores(x_cal, base)
        a, b = net.scores(x_test, base), net.scores(x_test, base, batch=1)
        c_self = net.scores(x_cal, base, batch=1)
        if "centred" in kind:
            c0 = np.float32(np.median(cal))
            cal, a, b, c_self = cal - c0, a - c0, b - c0, c_self - c0
        moved = a != b
        rel = np.abs(a.astype(float) - b) / np.maximum(np.abs(a.astype(float)), 1e-300)
        self_p_exact = (1.0 + np.searchsorted(np.sort(cal), cal, side="right")) / (len(cal) + 1)
        for lib in ("skood", "nonconform"):
            if lib == "skood":
                pa, pb = conformal_p_values(cal, a), conformal_p_values(cal, b)
                ps = conformal_p_values(cal, c_self)
            else:
                pa, pb = nc_p_values(cal, a), nc_p_values(cal, b)
                ps = nc_p_values(cal, c_self)
            d = pb - pa
            rows.append(
                [
                    kind,
                    lib,
                    f"{int(moved.sum())} / {len(a)}",
                    fmt(rel.max(), 2),
                    int(np.sum(rel > 1e-6)),
                    int(np.sum(d != 0)),
                    fmt(np.max(np.abs(d)), 3),
                    int(np.sum(d < 0)),
                    int(np.sum(ps < self_p_exact)),
                    fmt(np.max(self_p_exact - ps), 3),
                    "".join(f"{int(np.sum((pa <= al) != (pb <= al)))}/" for al in ALPHAS).rstrip(
                        "/"
                    ),
                ]
            )
    table(
        [
            "score",
            "library",
            "test scores moved A->B",
            "max rel move",
            "moved > 1e-6 rel",
            "p changed",
            "max abs change",
            "p fell",
            "self: p below own rank",
            "self: max drop",
            "level flags changed (0.05/0.1/0.2)",
        ],
        rows,
    )


# -- 3: end to end -------------------------------------------------------------------------------
def synthetic(seed):
    rng = np.random.default_rng(100 + seed)
    d = 5
    X_train = rng.normal(size=(2000, d))
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    X_test = np.r_[rng.normal(size=(1800, d)), rng.normal(size=(200, d)) + 5.0 * direction]
    y_test = np.r_[np.zeros(1800, int), np.ones(200, int)]
    return X_train, X_test, y_test


def skood_calibration_rows(n, fraction, seed):
    """The calibration rows skood's split picks for ``n`` unlabelled rows (re-derived here:
    ``split_holdout``: a ``RandomState(seed)`` permutation, the first ``round(fraction n)``)."""
    perm = np.random.RandomState(seed).permutation(n)
    rows = np.zeros(n, dtype=bool)
    rows[perm[: max(1, round(fraction * n))]] = True
    return rows


def end_to_end(datasets, seeds):
    from nonconform import ConformalDetector as NCDetector
    from nonconform import Empirical, Split
    from sklearn.ensemble import IsolationForest

    from skood.conformal import ConformalDetector

    print("## 3. End to end: IsolationForest(random_state=0), same training/calibration rows\n")
    print(
        "skood: `ConformalDetector(IsolationForest(random_state=0), random_state=s)` fitted on "
        "X_train (calibration_fraction=0.3). nonconform: `IsolationForest(random_state=0)` fitted "
        "here on the same training rows, wrapped in `nonconform.ConformalDetector(strategy="
        "Split(n_calib=0.3), estimation=Empirical('classical'))` and given the same calibration "
        "rows with `calibrate(X_cal)`. 'rows ok': the IF scores of the calibration rows equal "
        "skood's `calibration_scores_`. Level flags: p <= alpha (skood `predict`, fdr=False); "
        "BH: skood `predict` with fdr=True vs nonconform `select(X_test, alpha)`. Cells: "
        "skood / nonconform counts, '=' when identical row by row.\n"
    )
    rows, own = [], []
    for dname, loader in datasets:
        for s in seeds:
            X_train, X_test, y_test = loader(s)
            cd = ConformalDetector(IsolationForest(random_state=0), alpha=0.1, random_state=s)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cd.fit(X_train)
            cal_rows = skood_calibration_rows(len(X_train), 0.3, s)
            base = IsolationForest(random_state=0).fit(X_train[~cal_rows])
            rows_ok = np.array_equal(
                np.sort(base.score_samples(X_train[cal_rows])), cd.calibration_scores_
            )
            nc = NCDetector(
                detector=base,
                strategy=Split(n_calib=0.3),
                estimation=Empirical(tie_break="classical"),
            )
            nc.detector.set_params(n_jobs=1)  # nonconform sets n_jobs=-1; 2 shared cores here
            nc.calibrate(X_train[cal_rows])
            p_nc = nc.compute_p_values(X_test)
            p_sk = cd.score_samples(X_test)
            same_scores = np.array_equal(cd.detector_scores(X_test), base.score_samples(X_test))
            row = [
                dname,
                s,
                int((~cal_rows).sum()),
                int(cal_rows.sum()),
                len(X_test),
                "yes" if rows_ok and same_scores else "NO",
                "yes" if np.array_equal(p_sk, p_nc) else f"NO ({int(np.sum(p_sk != p_nc))})",
            ]
            for alpha in ALPHAS:
                cd.set_params(alpha=alpha, fdr=False)
                lv_sk = cd.predict(X_test) == -1
                lv_nc = p_nc <= alpha
                cd.set_params(fdr=True)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    bh_sk = cd.predict(X_test) == -1
                bh_nc = np.asarray(nc.select(X_test, alpha=alpha))
                eq_lv = "=" if np.array_equal(lv_sk, lv_nc) else "DIFF"
                eq_bh = "=" if np.array_equal(bh_sk, bh_nc) else "DIFF"
                row.append(f"{lv_sk.sum()}/{lv_nc.sum()} {eq_lv}")
                row.append(f"{bh_sk.sum()}/{bh_nc.sum()} {eq_bh}")
            rows.append(row)
            # nonconform left to pick its own split (and IF seed): the rows differ.
            own_nc = NCDetector(
                detector=IsolationForest(random_state=0),
                strategy=Split(n_calib=0.3),
                estimation=Empirical(tie_break="classical"),
                seed=s,
            )
            own_nc.detector.set_params(n_jobs=1)
            own_nc.fit(X_train)
            cd.set_params(alpha=0.1, fdr=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bh_sk = cd.predict(X_test) == -1
            bh_own = np.asarray(own_nc.select(X_test, alpha=0.1))
            own.append(
                [
                    dname,
                    s,
                    f"{bh_sk.sum()}/{bh_own.sum()}",
                    int(np.sum(bh_sk != bh_own)),
                    fmt(
                        np.mean(np.abs(cd.score_samples(X_test) - own_nc.compute_p_values(X_test))),
                        3,
                    ),
                ]
            )
    header = ["data", "seed", "n train", "n cal", "m test", "rows ok", "p identical"]
    for alpha in ALPHAS:
        header += [f"level {alpha}", f"BH {alpha}"]
    table(header, rows)
    print(
        "For scale: nonconform left to its own `fit` (its own `train_test_split` of the rows, "
        "IsolationForest re-seeded with `seed=s`, contamination set to the smallest float): "
        "BH flags at alpha = 0.1 against skood's.\n"
    )
    table(["data", "seed", "BH flags skood/nc", "rows flagged differently", "mean abs p diff"], own)


def adbench_loader(name):
    from benchmarks._common.adbench import prepare

    path = ADBENCH / f"{name}.npz"
    return lambda s: prepare(path, s)


# -- 4: Monte Carlo ------------------------------------------------------------------------------
def monte_carlo(reps, seed=0):
    from sklearn.ensemble import IsolationForest

    from skood.conformal import benjamini_hochberg, conformal_p_values, storey_null_proportion

    print("## 4. Monte Carlo: realised false-positive rate and FDR\n")
    rng = np.random.default_rng(seed)
    d, n_cal, m_in, m_out = 5, 500, 900, 100
    direction = np.ones(d) / np.sqrt(d)
    model = IsolationForest(random_state=0).fit(rng.normal(size=(2000, d)))
    pool_in = model.score_samples(rng.normal(size=(100_000, d)))
    pool_out = model.score_samples(rng.normal(size=(10_000, d)) + SHIFT * direction)
    print(
        f"IsolationForest(random_state=0) fitted once on 2,000 N(0, I_5) rows; a pool of 100,000 "
        f"inlier and 10,000 outlier (mean shifted by {SHIFT} along the diagonal) rows scored once. Each of {reps} "
        f"repetitions draws, without replacement, {n_cal} calibration inliers, {m_in} test "
        f"inliers and {m_out} test outliers (rows drawn without replacement from one pool are "
        "exchangeable, which is all the guarantees need; the model is fixed, as the split "
        "guarantee conditions on the training rows). 'tied': the same scores rounded to 0.02 "
        f"(about {len(np.unique(np.round(pool_in / 0.02)))} distinct values). FPR = share of the "
        "test inliers with p <= alpha, averaged over repetitions; FDR = mean over repetitions "
        "of the BH false discovery proportion; +- = one Monte-Carlo standard error (sd over "
        "repetitions / sqrt(reps)). Exact FPR for untied scores: floor(alpha (n+1)) / (n+1); "
        "BH's bound: alpha m0 / m.\n"
    )
    rows = []
    for setting in ("continuous", "tied"):
        fpr = {k: np.zeros((reps, len(ALPHAS))) for k in ("sk", "nc")}
        fdp = {k: np.zeros((reps, len(ALPHAS))) for k in ("sk", "nc", "st")}
        power = {k: np.zeros((reps, len(ALPHAS))) for k in ("sk", "st")}
        n_diff_p = n_diff_flags = 0
        for r in range(reps):
            idx = rng.choice(pool_in.size, n_cal + m_in, replace=False)
            cal = pool_in[idx[:n_cal]]
            test = np.r_[pool_in[idx[n_cal:]], pool_out[rng.choice(pool_out.size, m_out, False)]]
            if setting == "tied":
                cal, test = np.round(cal / 0.02) * 0.02, np.round(test / 0.02) * 0.02
            out = np.r_[np.zeros(m_in, bool), np.ones(m_out, bool)]
            p_sk = conformal_p_values(cal, test)
            p_nc = nc_p_values(cal, test)
            n_diff_p += int(np.any(p_sk != p_nc))
            pi0 = storey_null_proportion(p_sk)
            for j, alpha in enumerate(ALPHAS):
                fpr["sk"][r, j] = np.mean(p_sk[~out] <= alpha)
                fpr["nc"][r, j] = np.mean(p_nc[~out] <= alpha)
                rej = {
                    "sk": benjamini_hochberg(p_sk, alpha),
                    "nc": nc_bh(p_nc, alpha),
                    "st": benjamini_hochberg(p_sk, alpha, null_proportion=pi0),
                }
                n_diff_flags += int(not np.array_equal(rej["sk"], rej["nc"]))
                for k, v in rej.items():
                    fdp[k][r, j] = np.sum(v & ~out) / max(1, v.sum())
                power["sk"][r, j] = np.mean(rej["sk"][out])
                power["st"][r, j] = np.mean(rej["st"][out])
        for j, alpha in enumerate(ALPHAS):

            def ms(a, j=j):
                col = a[:, j]
                return f"{col.mean():.4f} +- {col.std(ddof=1) / np.sqrt(reps):.4f}"

            rows.append(
                [
                    setting,
                    alpha,
                    fmt(np.floor(alpha * (n_cal + 1)) / (n_cal + 1), 4),
                    ms(fpr["sk"]),
                    ms(fpr["nc"]),
                    fmt(alpha * m_in / (m_in + m_out), 3),
                    ms(fdp["sk"]),
                    ms(fdp["nc"]),
                    ms(fdp["st"]),
                    f"{power['sk'][:, j].mean():.3f} / {power['st'][:, j].mean():.3f}",
                ]
            )
        print(
            f"- {setting}: repetitions with any p-value differing between the libraries: "
            f"{n_diff_p} / {reps}; (repetition, alpha) cells with BH flags differing: "
            f"{n_diff_flags} / {reps * len(ALPHAS)}."
        )
    print()
    table(
        [
            "scores",
            "alpha",
            "exact FPR",
            "FPR skood",
            "FPR nonconform",
            "BH bound",
            "FDR skood",
            "FDR nonconform",
            "FDR skood Storey-BH",
            "power BH / Storey-BH",
        ],
        rows,
    )
    return model, pool_in, pool_out


# -- 5: nonconform's FDP bound -------------------------------------------------------------------
def fdp_bound(pool_in, pool_out, seed=1):
    from nonconform.fdr import conformal_fdp_upper_bound

    print("## 5. nonconform's `conformal_fdp_upper_bound` on one example\n")
    rng = np.random.default_rng(seed)
    n_cal, m_in, m_out = 500, 900, 100
    idx = rng.choice(pool_in.size, n_cal + m_in, replace=False)
    cal = pool_in[idx[:n_cal]]
    test = np.r_[pool_in[idx[n_cal:]], pool_out[rng.choice(pool_out.size, m_out, False)]]
    out = np.r_[np.zeros(m_in, bool), np.ones(m_out, bool)]
    p = nc_p_values(cal, test)
    t0 = time.perf_counter()
    res = conformal_fdp_upper_bound(p, n_calibration=n_cal, confidence=0.95, seed=0)
    took = time.perf_counter() - t0
    rows = []
    bh_thr = {a: p[nc_bh(p, a)].max(initial=0.0) for a in ALPHAS}
    thresholds = sorted({0.01, 0.02, 0.05, 0.1, *bh_thr.values()} - {0.0})
    for t in thresholds:
        sel = p <= t
        label = ", ".join(f"BH at {a}" for a, v in bh_thr.items() if v == t)
        rows.append(
            [
                fmt(t, 4) + (f" ({label})" if label else ""),
                int(sel.sum()),
                int(np.sum(sel & ~out)),
                fmt(np.sum(sel & ~out) / max(1, sel.sum()), 3),
                fmt(float(res.bound_at(t)), 3),
            ]
        )
    print(
        f"Same pool as section 4, one draw: {n_cal} calibration inliers, {m_in} test inliers, "
        f"{m_out} outliers; method `{res.method}` (nonconform's default), confidence 0.95, "
        f"{res.n_resamples} resamples, boost={res.boost} ({took:.1f} s). The bound holds "
        "simultaneously over all thresholds with probability 0.95.\n"
    )
    table(
        ["threshold t (p <= t)", "discoveries", "false", "realised FDP", "FDP upper bound (95 %)"],
        rows,
    )


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Prints Markdown tables to stdout (see benchmarks/conformal/nonconform_check.md).",
    )
    ap.add_argument(
        "--nonconform",
        default="/tmp/nonconform_src",
        help="directory holding nonconform's package directory (git archive of its repo)",
    )
    ap.add_argument(
        "--mirror", default=MIRROR, help="nonconform's git repository, to report the commit"
    )
    ap.add_argument("--reps", type=int, default=5000, help="Monte Carlo repetitions (>= 1000)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per end-to-end data set")
    ap.add_argument(
        "--datasets",
        nargs="*",
        default=["27_PageBlocks", "31_satimage-2"],
        help="ADBench sets (npz stems) for the end-to-end check",
    )
    args = ap.parse_args(argv)

    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("warning: OMP_NUM_THREADS is not 1", file=sys.stderr)
    sys.path.insert(0, str(Path(args.nonconform).resolve()))
    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo))
    import sklearn

    import skood

    t_start = time.perf_counter()
    version, commit, where = nonconform_version(args.nonconform, args.mirror)
    print("# nonconform check output\n")
    print(f"- nonconform {version} from {where}; repository commit: {commit}")
    print(
        f"- skood {getattr(skood, '__version__', '?')}; numpy {np.__version__}; "
        f"scikit-learn {sklearn.__version__}; Python {platform.python_version()}"
    )
    print(
        f"- machine: {platform.machine()} {platform.processor() or ''} "
        f"{os.cpu_count()} CPUs visible; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}\n"
    )

    rng = np.random.default_rng(0)
    cases, net, x_cal, x_test = score_cases(rng)
    check_p_values(cases)
    check_batches(net, x_cal, x_test)
    t1 = time.perf_counter()
    datasets = [("synthetic", synthetic)] + [(n, adbench_loader(n)) for n in args.datasets]
    end_to_end(datasets, range(args.seeds))
    t2 = time.perf_counter()
    _, pool_in, pool_out = monte_carlo(args.reps)
    t3 = time.perf_counter()
    fdp_bound(pool_in, pool_out)
    t4 = time.perf_counter()
    print(
        f"Wall time: {t4 - t_start:.0f} s (p-values/BH {t1 - t_start:.0f} s, end to end "
        f"{t2 - t1:.0f} s, Monte Carlo {t3 - t2:.0f} s, FDP bound {t4 - t3:.0f} s)."
    )


if __name__ == "__main__":
    main()
