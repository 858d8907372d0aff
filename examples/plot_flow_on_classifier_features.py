"""
Two-stage detection: a density on a classifier's features
=========================================================

The QuantOD recipe (Taghikhah et al., AAAI 2024) in two stages: train a classifier on the
inlier classes, then fit a density model on its penultimate features and flag inputs whose
features are unlikely. This example runs both stages on scikit-learn's digits (0-4 are the
inlier classes, 5-9 never seen in training) and compares, by ROC curve, a
:class:`~skood.QuantileFlowDetector`, a class-conditional :class:`~skood.GaussianMahalanobis`
and the classifier's own maximum softmax probability.
"""

# %%
# Stage 1: a classifier on digits 0-4
# -----------------------------------
#
# ``load_digits_ood`` labels digits 0-4 with their class and 5-9 with -1 (outlier);
# ``novelty_split`` trains on half of the inliers and tests on the other half plus every
# outlier. Stage 1 is scikit-learn's ``MLPClassifier`` with one hidden layer of 64 ReLU units;
# its hidden activations, passed through ``log1p`` (it keeps their order and tames the tail of
# the ReLU outputs), are the features. Units that never fire on the training rows would need no
# special care: skood's density models give a constant column a narrow Gaussian.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import RocCurveDisplay
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from skood import GaussianMahalanobis, QuantileFlowDetector
from skood.datasets import load_digits_ood, novelty_split
from skood.metrics import auroc, fpr_at_tpr

X, y = load_digits_ood(inlier_classes=range(5))
X_train, y_train, X_test, y_test = novelty_split(X, y, random_state=0)
scale = StandardScaler().fit(X_train)
clf = MLPClassifier((64,), max_iter=300, random_state=0).fit(scale.transform(X_train), y_train)


def features(A):
    hidden = np.maximum(0, scale.transform(A) @ clf.coefs_[0] + clf.intercepts_[0])
    return np.log1p(hidden)


F_train, F_test = features(X_train), features(X_test)
print(
    f"{len(X_train)} training inliers, {len(X_test)} test rows "
    f"({np.sum(y_test == -1)} outliers); features: {F_train.shape[1]} hidden units"
)

# %%
# Stage 2: densities on the features
# ----------------------------------
#
# Both detectors get the class labels in ``y``: the Gaussian uses them for its class-conditional
# tied-covariance (Mahalanobis) score, the flow ignores them. The flow is
# ``QuantileFlowDetector`` at its defaults: it trains on the mean log-likelihood of each batch
# (``q="mean"``, the default chosen by measurement); QuantOD's idea, minus the 5 % quantile of the
# batch's log-likelihoods, is ``q=0.05``. The classifier's maximum softmax probability (MSP) is
# the usual one-stage baseline.
flow = QuantileFlowDetector(random_state=0).fit(F_train, y_train)
gauss = GaussianMahalanobis(covariance="ledoit_wolf", random_state=0).fit(F_train, y_train)
scores = {
    "QuantileFlowDetector (mean NLL)": flow.score_samples(F_test),
    "GaussianMahalanobis (class-cond.)": gauss.score_samples(F_test),
    "classifier MSP": clf.predict_proba(scale.transform(X_test)).max(axis=1),
}
for name, s in scores.items():
    print(f"{name:34s} AUROC {auroc(y_test, s):.3f}  FPR95 {fpr_at_tpr(y_test, s):.3f}")

# %%
# ROC curves
# ----------
#
# Inliers are the positive class and every score is "higher = more normal", so sklearn's
# ``RocCurveDisplay`` takes the scores as they are with ``y_test != -1`` as the truth. The
# false-positive rate is the share of unseen digits (5-9) accepted.
fig, ax = plt.subplots(figsize=(6, 5.5))
for name, s in scores.items():
    RocCurveDisplay.from_predictions(y_test != -1, s, name=name, ax=ax)
ax.plot([0, 1], [0, 1], color="gray", ls=":", label="chance")
ax.axhline(0.95, color="gray", lw=0.8, ls="--", label="TPR 95 % (FPR95 read here)")
ax.set_xlabel("false-positive rate (outliers accepted)")
ax.set_ylabel("true-positive rate (inliers accepted)")
ax.set_title("Digits 0-4 vs. unseen 5-9, scores on MLP features")
ax.legend(loc="lower right", fontsize="small")
fig.tight_layout()

# %%
# What to conclude
# ----------------
#
# In this run the second stage does not beat the first: the class-conditional Gaussian on the
# features and the classifier's own MSP reach about the same AUROC, the MSP has the lowest
# FPR95, and the flow is behind both, at many times the Gaussian's fit time. With 450 training
# rows in 64 dimensions, a Gaussian is hard to beat and a flow has little data to learn more.
# Run for 200 epochs at five seeds and the paper's clamp of 3.0, the
# :doc:`quantile-loss claim </evidence/quantile_claim>` found the flow with the quantile loss ahead
# of the mean loss and level with the class-conditional Gaussian on digits features; at skood's
# default clamp of 0.5 the mean loss is ahead. ``plot_quantile_vs_mean.py`` in this gallery
# compares the two losses.
