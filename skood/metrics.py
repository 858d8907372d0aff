"""OOD metrics and ``GridSearchCV`` scorers, for any estimator with ``score_samples``.

Inliers are the positive class and scores are "higher = more normal", as in the QuantOD code's
``get_measures(in_score, out_score)``. ``y`` is either skood's label convention (``-1`` marks an
outlier, any other value an inlier) or a boolean mask with ``True`` for inliers.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from skood._display import ContributionDisplay, ScoreDistributionDisplay
from skood.base import OUTLIER_LABEL, split_labels

__all__ = [
    "SCORERS",
    "ContributionDisplay",
    "ScoreDistributionDisplay",
    "aupr_in",
    "aupr_out",
    "auroc",
    "fpr_at_tpr",
    "make_ood_scorer",
    "normal_auc",
]


def _inlier_and_scores(y, scores) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(y).ravel()
    if y.shape[0] != scores.shape[0]:
        raise ValueError(f"y has {y.shape[0]} entries but scores has {scores.shape[0]}.")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or inf; skood detectors always return finite scores.")
    if y.dtype == bool:
        inlier = y
    else:
        inlier = np.zeros(y.shape[0], dtype=bool)
        try:
            inlier, _ = split_labels(y, y.shape[0])
        except ValueError:  # every row an outlier: reported below with the other case
            pass
    if inlier.all() or not inlier.any():
        found = np.unique(y)[:10]
        raise ValueError(
            "OOD metrics need both inliers and outliers; "
            f"y holds only {'inliers' if inlier.all() else 'outliers'} (values {found}). In skood's "
            f"convention {OUTLIER_LABEL} marks an outlier and any other value an inlier, or pass a "
            "boolean mask with True for inliers. ADBench-style labels (1 = anomaly, 0 = normal) "
            "convert with skood.datasets.from_anomaly_labels(y)."
        )
    return inlier, scores


def auroc(y, scores) -> float:
    """Area under the ROC curve with inliers as positives (0.5 = chance, 1 = perfect).

    Examples
    --------
    >>> auroc([1, 1, -1, -1], [0.9, 0.8, 0.1, 0.85])
    0.75
    """
    inlier, scores = _inlier_and_scores(y, scores)
    return float(roc_auc_score(inlier, scores))


def aupr_in(y, scores) -> float:
    """Average precision with inliers as positives and the score as ranking (AUPR-In).

    Examples
    --------
    >>> round(aupr_in([1, 1, -1, -1], [0.9, 0.8, 0.1, 0.85]), 3)
    0.833
    >>> aupr_in([1, 1, -1, -1], [0.9, 0.8, 0.1, 0.2])  # every inlier ranked first
    1.0
    """
    inlier, scores = _inlier_and_scores(y, scores)
    return float(average_precision_score(inlier, scores))


def aupr_out(y, scores) -> float:
    """Average precision with outliers as positives, ranked by ``-score`` (AUPR-Out).

    Examples
    --------
    >>> round(aupr_out([1, 1, -1, -1], [0.9, 0.8, 0.1, 0.85]), 3)
    0.833
    >>> aupr_out([True, True, False, False], [0.9, 0.8, 0.1, 0.2])  # a mask: True = inlier
    1.0
    """
    inlier, scores = _inlier_and_scores(y, scores)
    return float(average_precision_score(~inlier, -scores))


def fpr_at_tpr(y, scores, tpr: float = 0.95) -> float:
    """Fraction of outliers accepted at the threshold that accepts ``tpr`` of the inliers.

    FPR95 for ``tpr=0.95``: the first point of the (full, ``drop_intermediate=False``) ROC curve
    whose inlier acceptance reaches ``tpr``. Lower is better.

    Examples
    --------
    >>> fpr_at_tpr([1, 1, 1, 1, -1, -1], [4, 3, 2, 1, 2.5, 0], tpr=0.95)
    0.5
    """
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must lie in (0, 1], got {tpr}.")
    inlier, scores = _inlier_and_scores(y, scores)
    fprs, tprs, _ = roc_curve(inlier, scores, drop_intermediate=False)
    return float(fprs[np.searchsorted(tprs, tpr, side="left")])


class _OODScorer:
    """``scorer(estimator, X, y)`` calling ``estimator.score_samples`` (sklearn's scorers cannot)."""

    def __init__(self, metric, sign: int = 1, **kwargs) -> None:
        self.metric, self.sign, self.kwargs = metric, sign, kwargs

    def __call__(self, estimator, X, y) -> float:
        # + 0.0: a negated 0 (no outlier accepted) is reported as 0.0, not -0.0
        return self.sign * self.metric(y, estimator.score_samples(X), **self.kwargs) + 0.0

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        sign = ", greater_is_better=False" if self.sign < 0 else ""
        return f"make_ood_scorer({self.metric.__name__}{sign}{args})"


def make_ood_scorer(metric, *, greater_is_better: bool = True, **kwargs) -> _OODScorer:
    """A ``GridSearchCV(scoring=...)`` scorer from ``metric(y, scores)`` on ``score_samples``.

    Works for any estimator (or Pipeline) with ``score_samples``, including sklearn's own
    detectors. Use it with a splitter whose test folds hold outliers, such as
    :class:`skood.model_selection.OODStratifiedKFold`.

    Parameters
    ----------
    metric : callable
        ``metric(y, scores, **kwargs) -> float``.
    greater_is_better : bool, default=True
        If False the scorer returns ``-metric`` (sklearn maximises scores).
    **kwargs
        Passed to ``metric``.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import GaussianMahalanobis
    >>> rng = np.random.RandomState(0)
    >>> det = GaussianMahalanobis().fit(rng.normal(size=(200, 3)))
    >>> X_test = np.vstack([rng.normal(size=(50, 3)), rng.normal(loc=2.0, size=(10, 3))])
    >>> y_test = np.r_[np.ones(50), -np.ones(10)]
    >>> scorer = make_ood_scorer(fpr_at_tpr, greater_is_better=False, tpr=0.95)
    >>> scorer
    make_ood_scorer(fpr_at_tpr, greater_is_better=False, tpr=0.95)
    >>> scorer(det, X_test, y_test) == -fpr_at_tpr(y_test, det.score_samples(X_test), tpr=0.95)
    True
    """
    return _OODScorer(metric, 1 if greater_is_better else -1, **kwargs)


def normal_auc(estimator, X, y) -> float:
    """A scorer: AUROC of ``estimator.score_samples(X)`` with the normal rows as positives.

    The metric of Liznerski et al. (TMLR 2022), ``roc_auc_score(y == normal, score_samples)``,
    in skood's label convention (``-1`` = anomaly); the same as ``SCORERS["auroc"]``, usable as
    ``cross_val_score(det, X, y, scoring=normal_auc)`` with any sklearn version.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import GaussianMahalanobis
    >>> rng = np.random.RandomState(0)
    >>> det = GaussianMahalanobis().fit(rng.normal(size=(200, 3)))
    >>> X_test = np.vstack([rng.normal(size=(50, 3)), rng.normal(loc=5.0, size=(10, 3))])
    >>> y_test = np.r_[np.ones(50), -np.ones(10)]  # -1: the 10 shifted rows
    >>> normal_auc(det, X_test, y_test)
    1.0
    """
    return auroc(y, estimator.score_samples(X))


#: Ready scorers by name: ``GridSearchCV(..., scoring=SCORERS["auroc"])`` or a dict of several.
#: ``"neg_fpr95"`` is ``-FPR95`` (sklearn maximises).
SCORERS = {
    "auroc": make_ood_scorer(auroc),
    "aupr_in": make_ood_scorer(aupr_in),
    "aupr_out": make_ood_scorer(aupr_out),
    "neg_fpr95": make_ood_scorer(fpr_at_tpr, greater_is_better=False, tpr=0.95),
}
