"""
=====================================
ROC curves of several detectors
=====================================

Because every skood detector follows scikit-learn's outlier-detection contract
(``score_samples``: higher = more normal), its scores go straight into scikit-learn's metrics and
displays. This example compares two skood detectors and three scikit-learn ones on the same
open-set split of the digits data, with one ROC curve each on a single plot and a table of
AUROC and FPR95.
"""

# %%
# Data: digits 0-4 are inliers, 5-9 are outliers
# -----------------------------------------------
# :func:`skood.datasets.load_digits_ood` labels digits 0-4 with their class and 5-9 with ``-1``.
# :func:`skood.datasets.novelty_split` trains on half of the inliers and tests on the other half
# plus every outlier, so no detector sees a 5-9 image while training.
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import RocCurveDisplay
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from skood import GaussianMahalanobis, QuantileFlowDetector
from skood.datasets import load_digits_ood, novelty_split
from skood.metrics import auroc, fpr_at_tpr

X, y = load_digits_ood(inlier_classes=range(5))
X_train, y_train, X_test, y_test = novelty_split(X, y, random_state=0)
print(f"train: {len(y_train)} images of 0-4")
print(f"test:  {np.sum(y_test != -1)} images of 0-4, {np.sum(y_test == -1)} images of 5-9")

# %%
# Five detectors with their default settings
# -------------------------------------------
# Each one follows a ``StandardScaler`` (the constant border pixels need no special treatment).
# ``y_train`` holds the digit labels: :class:`~skood.GaussianMahalanobis` then fits one Gaussian
# per class with a shared covariance (Lee et al., NeurIPS 2018) and scores with the closest
# class; the other detectors ignore the labels. :class:`~skood.QuantileFlowDetector` is the
# quantile-trained flow of QuantOD (Taghikhah et al., AAAI 2024) with skood's default settings.
detectors = {
    "QuantileFlowDetector": QuantileFlowDetector(random_state=0),
    "GaussianMahalanobis (class-cond.)": GaussianMahalanobis(random_state=0),
    "IsolationForest": IsolationForest(random_state=0),
    "LocalOutlierFactor": LocalOutlierFactor(novelty=True),
    "OneClassSVM": OneClassSVM(),
}
scores, fit_seconds = {}, {}
for name, detector in detectors.items():
    start = time.perf_counter()
    pipe = make_pipeline(StandardScaler(), detector).fit(X_train, y_train)
    fit_seconds[name] = time.perf_counter() - start
    scores[name] = pipe.score_samples(X_test)

# %%
# ROC curves
# ----------
# ``RocCurveDisplay.from_predictions`` takes the scores as they are: the inliers are the
# positive class (``pos_label=True`` on the mask ``y_test != -1``), so the curve shows the share
# of inliers accepted (true-positive rate) against the share of outliers accepted
# (false-positive rate) as the threshold moves. The dotted line marks the 95 % inlier acceptance
# at which FPR95 is read.
is_inlier = y_test != -1
fig, ax = plt.subplots(figsize=(6.5, 6))
for name, s in scores.items():
    RocCurveDisplay.from_predictions(is_inlier, s, pos_label=True, name=name, ax=ax)
ax.axhline(0.95, color="grey", linestyle=":", linewidth=1, label="TPR = 0.95 (FPR95)")
ax.plot([0, 1], [0, 1], color="k", linestyle="--", linewidth=1, label="chance")
ax.set_xlabel("false-positive rate (outliers accepted)")
ax.set_ylabel("true-positive rate (inliers accepted)")
ax.set_title("Digits: 0-4 inliers vs 5-9 outliers")
ax.legend(loc="lower right", fontsize="small")
fig.tight_layout()

# %%
# The same comparison as a table: AUROC (higher is better) and FPR95, the share of outliers
# still accepted when 95 % of the inliers are (lower is better).
print(f"{'detector':35s} {'AUROC':>6s} {'FPR95':>6s} {'fit (s)':>8s}")
for name, s in sorted(scores.items(), key=lambda item: -auroc(y_test, item[1])):
    print(
        f"{name:35s} {auroc(y_test, s):6.3f} {fpr_at_tpr(y_test, s):6.3f} {fit_seconds[name]:8.1f}"
    )

# %%
# On 450 raw 8 x 8 images, the class-conditional Gaussian and the neighbour method
# (``LocalOutlierFactor``) lead, and they fit in a fraction of a second. The two metrics need not
# agree on the order: AUROC averages over every threshold, FPR95 reads one point at the high-TPR
# end, where the curves cross. The flow is meant for a classifier's penultimate features, the
# QuantOD two-stage setting (see
# :ref:`sphx_glr_auto_examples_plot_flow_on_classifier_features.py`). The figure shows one split
# and one seed.
