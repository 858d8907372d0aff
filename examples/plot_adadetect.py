"""
==========================================================
AdaDetect: a score learned from the batch, FDR controlled
==========================================================

:class:`~skood.adadetect.AdaDetect` (Marandon, Lei, Mary and Roquain, Annals of Statistics
2024) flags the outliers of a *batch* of new rows at a false discovery rate ``alpha``, like
Benjamini–Hochberg on split-conformal p-values (:class:`~skood.conformal.ConformalDetector` with
``fdr=True``), but it learns its score from the batch: a classifier is trained to tell known
inliers from the batch (mixed with held-out calibration inliers), so it focuses on whatever
makes the batch's outliers different. This example runs both on real data, with the same
inliers and the same batch, and draws the Benjamini–Hochberg picture of each.
"""

# %%
# Data: breast cancer, a batch with 60 malignant rows
# ---------------------------------------------------
# scikit-learn's bundled breast-cancer data (569 rows, 30 features): benign tumours are the
# inliers, malignant ones the outliers. 200 benign rows are the known inliers given to ``fit``;
# the batch to screen holds the other 157 benign rows and 60 malignant ones (28 % outliers).
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer

from skood import GaussianMahalanobis
from skood.adadetect import AdaDetect
from skood.conformal import ConformalDetector

X, y = load_breast_cancer(return_X_y=True)
benign, malignant = X[y == 1], X[y == 0]
rng = np.random.default_rng(0)
rows = rng.permutation(len(benign))
inliers = benign[rows[:200]]
batch = np.r_[benign[rows[200:]], malignant[rng.permutation(len(malignant))[:60]]]
is_outlier = np.r_[np.zeros(len(benign) - 200, dtype=bool), np.ones(60, dtype=bool)]
print(f"known inliers: {len(inliers)}; batch: {len(batch)} rows, {is_outlier.sum()} outliers")

# %%
# Three procedures at FDR 10 %
# ----------------------------
# * AdaDetect with its default classifier (a random forest of depth-5 trees): 70 % of the
#   inliers train the class-0 side, the other 30 % calibrate; the batch joins the calibration rows on the
#   class-1 side. ``detect`` fits the classifier once and returns the p-values and the flags.
# * The same with ``adaptive=True``: Benjamini–Hochberg at ``alpha / pi0``, ``pi0`` the share of
#   inliers in the batch as estimated by Storey's estimator (the paper's adaptive variant).
# * Split conformal + BH with a one-class score fixed on inliers alone (a Gaussian, Mahalanobis
#   distance), calibrated on the same share of the inliers: the non-adaptive baseline.
alpha = 0.1
ada = AdaDetect(alpha=alpha, random_state=0).fit(inliers).detect(batch)
ada_adaptive = AdaDetect(alpha=alpha, adaptive=True, random_state=0).fit(inliers).detect(batch)
baseline = ConformalDetector(
    GaussianMahalanobis(), alpha=alpha, fdr=True, calibration_fraction=0.3, random_state=0
).fit(inliers)
p_baseline = baseline.score_samples(batch)
# ConformalDetector warns that with 60 calibration rows BH cannot flag a *lone* outlier in 217
# rows (that needs p <= alpha / m); here the batch holds many, which is the case BH is for.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*lone outlier")
    baseline_flags = baseline.predict(batch) == -1
flags = {
    "AdaDetect": ada.outlier,
    "AdaDetect, adaptive": ada_adaptive.outlier,
    "split conformal (Gaussian)": baseline_flags,
}
for name, flagged in flags.items():
    fdp = (flagged & ~is_outlier).sum() / max(flagged.sum(), 1)
    print(
        f"{name:28s} flagged {flagged.sum():3d}, false discovery proportion {fdp:.3f}, "
        f"power {flagged[is_outlier].mean():.3f}"
    )
print(f"Storey's estimate of the share of inliers: {ada_adaptive.null_proportion:.3f} (true 0.72)")

# %%
# The Benjamini–Hochberg picture
# ------------------------------
# BH sorts the batch's p-values and flags every row up to the last one below the line
# ``alpha k / m`` (``alpha k / (m pi0)`` when adaptive). The learned score pushes more of the
# malignant rows' p-values to the floor ``1 / (n_calibration + 1)`` than the Gaussian does,
# so BH's line is crossed later. Each point is a row, coloured by its true label, which neither
# procedure saw. The guarantee is the *expected* share of benign rows among the flagged ones
# (at most 10 %), over draws of the inliers and of the batch; this one batch is one draw.
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
m = len(batch)
for ax, (title, p) in zip(
    axes, [("AdaDetect (learned score)", ada.p_values), ("split conformal (Gaussian)", p_baseline)]
):
    order = np.argsort(p, kind="stable")
    k = np.arange(1, m + 1)
    colors = np.where(is_outlier[order], "tab:red", "tab:blue")
    ax.scatter(k, p[order], c=colors, s=8)
    ax.plot(k, alpha * k / m, "k--", lw=1, label="BH line alpha k / m")
    if title.startswith("AdaDetect"):
        pi0 = ada_adaptive.null_proportion
        ax.plot(k, alpha * k / (m * pi0), "k:", lw=1, label="adaptive: alpha k / (m pi0)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rank k of the p-value in the batch")
    ax.set_title(title)
    ax.scatter([], [], c="tab:red", s=8, label="malignant (outlier)")
    ax.scatter([], [], c="tab:blue", s=8, label="benign (inlier)")
    ax.legend(fontsize=8, loc="lower right")
axes[0].set_ylabel("p-value (higher = more normal)")
fig.tight_layout()
plt.show()

# %%
# What this costs and when to use it
# ----------------------------------
# AdaDetect is *transductive*: every ``predict`` / ``score_samples`` / ``detect`` fits a new
# classifier on ``n_train + n_calibration + m`` rows, and a row's p-value depends on the batch it
# came with. Use it to screen batches that may hold a fair number of outliers (the classifier
# learns from them); for scoring rows one at a time, or a stream, use
# :class:`~skood.conformal.ConformalDetector`. See :ref:`paper_adadetect` for the guarantee and
# the Monte Carlo study behind these claims.
