"""
==========================================
Score distributions and the threshold
==========================================

Every skood detector returns a score with *higher = more normal*, and a threshold ``offset_``
below which :meth:`predict` calls a row an outlier. This example draws, for three detectors, the
histograms of the test inliers' and outliers' scores with that threshold, using
:class:`skood.metrics.ScoreDistributionDisplay`. The picture shows what every OOD metric
summarises: how far apart the two distributions lie, and where the threshold cuts them.
"""

# %%
# Data: breast cancer, benign normal and malignant anomalous
# ------------------------------------------------------------
# scikit-learn's bundled breast-cancer data (569 rows, 30 features) as an anomaly-detection
# problem: benign tumours are the normal class, malignant ones the anomalies (``y == -1``).
# :func:`skood.bench.data.split` applies the semi-supervised protocol of ``skood bench``
# (ADBench's): half of the benign rows train, the other half and every malignant row test.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skood import GaussianMahalanobis, QuantileFlowDetector
from skood.bench.data import bundled_datasets, split
from skood.metrics import ScoreDistributionDisplay, auroc

data = bundled_datasets()["breast-cancer"]()
X_train, y_train, X_test, y_test = split(data, "semi", seed=0)
print(f"train: {len(y_train)} benign rows")
print(f"test:  {np.sum(y_test != -1)} benign, {np.sum(y_test == -1)} malignant rows")

# %%
# Three detectors, each after a StandardScaler
# ---------------------------------------------
# A single full-covariance Gaussian (:class:`~skood.GaussianMahalanobis`), a normalizing flow
# trained with the quantile loss of QuantOD (:class:`~skood.QuantileFlowDetector`, Taghikhah et
# al., AAAI 2024, with skood's default settings) and scikit-learn's ``IsolationForest``. All
# three follow the same contract, so they fit in the same ``Pipeline``. The skood detectors set
# ``offset_`` to the 5 % quantile (``contamination=0.05``) of the scores of training inliers
# that the model did not see: rows held out of the flow's training, out-of-fold scores for the
# Gaussian. ``IsolationForest`` uses its own ``contamination="auto"`` rule.
detectors = {
    "GaussianMahalanobis": GaussianMahalanobis(random_state=0),
    "QuantileFlowDetector": QuantileFlowDetector(random_state=0),
    "IsolationForest": IsolationForest(random_state=0),
}
pipelines = {
    name: make_pipeline(StandardScaler(), det).fit(X_train, y_train)
    for name, det in detectors.items()
}

# %%
# The score distributions
# ------------------------
# :meth:`~skood.metrics.ScoreDistributionDisplay.from_estimator` scores the test rows, splits
# them by ``y_test`` and draws the threshold of the pipeline's last step. The legend gives the
# share of inliers rejected and of outliers caught at that threshold.
#
# The Gaussian's and the flow's scores are log-densities in nats, and their lower tail is very
# long (the lowest test scores are printed below). Some features are nearly collinear (mean
# radius, perimeter and area), so the standardised training data fill a thin shape and a row off
# that shape gets a very low density:
X_scaled = StandardScaler().fit_transform(X_train)
eigenvalues = np.linalg.eigvalsh(np.cov(X_scaled, rowvar=False))
print(f"correlation of mean radius and mean perimeter: {np.corrcoef(X_train[:, :3].T)[0, 2]:.3f}")
print(
    f"covariance eigenvalues of the scaled training rows: {eigenvalues.min():.1e} to "
    f"{eigenvalues.max():.1f}"
)

# %%
# On a linear axis every inlier would fall into one bar, so the display draws those two
# detectors with ``xscale="asinh"`` (linear near zero, logarithmic beyond; the bins are of equal
# width on that axis) and counts rather than densities. ``IsolationForest``'s scores lie in a
# narrow range and keep a linear axis.
fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
for ax, (name, pipe) in zip(axes, pipelines.items()):
    log_density = name != "IsolationForest"
    xscale = "asinh" if log_density else None
    display = ScoreDistributionDisplay.from_estimator(
        pipe, X_test, y_test, ax=ax, name=name, density=False, xscale=xscale
    )
    if log_density:
        ax.set_xlabel("log-density in nats, asinh axis (higher = more normal)")
    ax.legend(loc="upper left", fontsize="small")
    scores = pipe.score_samples(X_test)
    print(
        f"{name:22s} AUROC {auroc(y_test, scores):.3f}  "
        f"inliers rejected {display.inlier_rejection_rate_:.2f}  "
        f"outliers caught {display.outlier_detection_rate_:.2f}  "
        f"lowest score {scores.min():.3g}"
    )
fig.suptitle("Breast cancer: test scores of benign (inlier) and malignant (outlier) rows")
fig.tight_layout()

# %%
# What the figure shows
# ----------------------
# All three detectors rank the rows well (AUROC, printed above: the share of inlier/outlier
# pairs in which the inlier scores higher). They differ in where the threshold falls:
#
# * The Gaussian and ``IsolationForest`` cut between the two groups, trading a few rejected
#   inliers for most outliers caught.
# * The flow's threshold lies far out in the inliers' tail: it rejects 1 % of the test inliers
#   and catches only about a third of the outliers. It is the 5 % quantile of the held-out
#   inliers' scores (``validation_fraction=0.2``), taken so that 5 % of new inliers fall below
#   it in expectation (:ref:`the contract <contract>`). From 36 held-out rows that lies between
#   their lowest and second-lowest scores, so a single very low held-out score moves it a long
#   way:
flow = pipelines["QuantileFlowDetector"][-1]
calibration = flow.calibration_scores_
print(f"{calibration.size} held-out inliers; their lowest scores: {np.round(calibration[:3], 1)}")
print(f"offset_ = {flow.offset_:.4g}")

# %%
# A ranking metric such as AUROC does not depend on the threshold; the rates in the legends
# do. When the number of false alarms matters, choose the threshold on more held-out inliers,
# or wrap the detector in :class:`skood.ConformalDetector`, whose threshold comes with a
# guarantee on the false-positive rate (in expectation over calibration sets; per run with
# ``calibration_conditional``).
