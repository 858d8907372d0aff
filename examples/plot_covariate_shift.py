"""
===========================================================
Outlier detection when the inliers shift: weighted p-values
===========================================================

Conformal p-values (:class:`skood.ConformalDetector`) bound the false discovery rate when the
inliers of a batch look like the calibration inliers. When the batch's inliers come from a
*covariate-shifted* population (another site, another season, another sensor), they do not, and
Benjamini–Hochberg flags far more inliers than it promises. Jin and Candès (Biometrika 2025)
reweight the calibration rows by the likelihood ratio ``w = dQ/dP`` and select with Weighted
Conformalized Selection (WCS), which keeps the FDR at ``alpha``.
:class:`skood.shift.WeightedConformalDetector` does both around any detector, with ``w`` given or
estimated from the batch.
"""

# %%
# Data: inliers from P to train and calibrate, a shifted batch to screen
# ----------------------------------------------------------------------
# ``P = N(0, I_2)``; the batch's inliers follow ``Q = N((1, 0), I_2)``, whose likelihood ratio
# is ``w(x) = exp(x_0)`` up to a constant. Ten outliers sit above the inliers.
import matplotlib.pyplot as plt
import numpy as np

from skood import GaussianMahalanobis
from skood.conformal import ConformalDetector
from skood.shift import WeightedConformalDetector

rng = np.random.default_rng(0)
X_train = rng.normal(size=(2000, 2))
theta = np.array([1.0, 0.0])


def true_ratio(X):
    """dQ/dP up to a constant: only ratios of weights matter."""
    return np.exp(X @ theta)


def batch(rng, m=100, n_out=10):
    inliers = rng.normal(size=(m - n_out, 2)) + theta
    outliers = rng.normal(size=(n_out, 2)) * 0.4 + [0.0, 5.0]
    return np.vstack([inliers, outliers]), np.r_[np.zeros(m - n_out), np.ones(n_out)]


# %%
# Three detectors on the same calibration split
# ---------------------------------------------
# All wrap the same :class:`~skood.GaussianMahalanobis` and hold out half of the training rows to calibrate
# (1,000 rows: BH can then flag a lone outlier in a batch of 100, ``1 / 1001 <= 0.1 / 100``).
# ``ConformalDetector(fdr=True)`` ignores the shift; the weighted ones use the true ``w`` or
# estimate it on each batch with a logistic regression between calibration and batch rows.
base = GaussianMahalanobis()
detectors = {
    "unweighted + BH": ConformalDetector(base, alpha=0.1, fdr=True, calibration_fraction=0.5),
    "weighted + WCS (true w)": WeightedConformalDetector(
        base, likelihood_ratio=true_ratio, alpha=0.1, calibration_fraction=0.5
    ),
    "weighted + WCS (estimated w)": WeightedConformalDetector(
        base, alpha=0.1, calibration_fraction=0.5
    ),
}

# %%
# Realised FDR and power over 100 batches
# ---------------------------------------
# The FDR bound is an average over calibration sets as well as batches: one calibration set,
# especially a reweighted one (its effective size is smaller), can sit above or below it. Each
# repetition therefore draws new training rows from ``P`` and refits with a new ``random_state``
# (new calibration rows, new tie-breaking and pruning draws). Re-splitting one fixed training
# set is not enough: with these 2,000 rows fixed, the weighted level test measured a
# false-positive rate of 0.130 (± 0.002) over 600 batches, and 0.101 with fresh rows.
fdp = {name: [] for name in detectors}
power = {name: [] for name in detectors}
for rep in range(100):
    X, is_out = batch(rng)
    X_fit = rng.normal(size=(2000, 2))
    for name, det in detectors.items():
        flagged = det.set_params(random_state=rep).fit(X_fit).predict(X) == -1
        fdp[name].append((flagged & (is_out == 0)).sum() / max(flagged.sum(), 1))
        power[name].append(flagged[is_out == 1].mean())
for name in detectors:
    print(f"{name:30s} FDR {np.mean(fdp[name]):.3f}  power {np.mean(power[name]):.3f}")

# %%
# The picture
# -----------
# Left: one batch, its flags by the unweighted and the WCS detector (true ``w``), refitted on
# ``X_train``. The unweighted
# p-values treat the shifted inliers' lower scores as evidence of anomaly. Right: the realised
# FDR over the 100 batches, with two Monte Carlo standard errors, against ``alpha = 0.1``.
X, is_out = batch(np.random.default_rng(1))
unweighted = detectors["unweighted + BH"].fit(X_train).predict(X) == -1
weighted = detectors["weighted + WCS (true w)"].fit(X_train).predict(X) == -1
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
ax0.scatter(*X_train[:300].T, s=6, c="0.8", label="calibration population P")
ax0.scatter(*X[~unweighted].T, s=10, c="tab:blue", label="batch, not flagged")
ax0.scatter(*X[unweighted & ~weighted].T, s=40, marker="x", c="tab:red", label="flagged by BH only")
ax0.scatter(*X[weighted].T, s=60, facecolors="none", edgecolors="k", label="flagged by WCS")
ax0.set_title("One shifted batch")
ax0.legend(fontsize=7, loc="lower right")
names = list(detectors)
means = [np.mean(fdp[n]) for n in names]
errors = [2 * np.std(fdp[n], ddof=1) / np.sqrt(len(fdp[n])) for n in names]
ax1.bar(range(3), means, yerr=errors, color=["tab:red", "tab:green", "tab:olive"])
ax1.axhline(0.1, color="k", ls="--", lw=1, label="alpha = 0.1")
ax1.set_xticks(range(3), [n.replace(" + ", "\n+ ") for n in names], fontsize=8)
ax1.set_ylabel("realised FDR over 100 batches")
ax1.legend()
fig.tight_layout()
plt.show()
