"""Conformal p-values and false-discovery-rate control for any detector.

Bates, Candès, Lei, Romano and Sesia, "Testing for outliers with conformal p-values", Annals of
Statistics 51(1), 2023. With the scores ``S_1..S_n`` of *calibration* inliers (rows the fitted
score never depended on) and skood's convention that a higher score is more normal, the p-value
of a new row ``x`` is

    u(x) = (1 + #{i : S_i <= s(x)}) / (n + 1).

A calibration score tied with ``s(x)`` counts towards ``u(x)``: ties make the p-value larger,
never smaller, so ``P(u(X) <= alpha) <= alpha`` holds for an inlier ``X`` exchangeable with the
calibration rows, whatever the ties (equality, ``floor(alpha (n + 1)) / (n + 1)``, when there are
none). Scores within a relative tolerance of each other are ties, the tolerance following the
precision the score was computed in (:func:`skood.base.tie_rtol`): a float32 network's score moves
by about 1e-7 relative with the batch it is computed in, and that rounding must not move a row's
p-value (counting more ties only raises p-values, so validity is kept); float64 scores tie within
1e-12 only, so that distinct scores stay distinct. The p-values of a batch are positively
dependent (PRDS, the paper's Theorem 2), so Benjamini–Hochberg on them controls the false
discovery rate.

:func:`conformal_p_values` is the formula; :class:`ConformalDetector` wraps any detector (skood's,
scikit-learn's, PyOD's) and gives p-values, ``predict`` at level ``alpha`` and BH flags.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real

import numpy as np
from scipy.special import gammaln
from scipy.stats import false_discovery_control
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted

from skood.base import (
    fit_context,
    is_outlier_label,
    split_holdout,
    split_labels,
    tie_ceiling,
    tie_rtol,
    warn_user,
)

__all__ = [
    "ConformalDetector",
    "benjamini_hochberg",
    "calibration_conditional_bounds",
    "conformal_p_values",
    "detector_scores",
    "detector_tie_rtol",
    "fit_detector",
    "storey_null_proportion",
]


def conformal_p_values(calibration_scores, scores, *, bounds=None, rtol=None) -> np.ndarray:
    """Split-conformal p-values of ``scores`` against ``calibration_scores`` (higher = more normal).

    Parameters
    ----------
    calibration_scores : array-like of shape (n,)
        Scores of inlier rows that the scoring function never depended on.
    scores : array-like of shape (m,)
    bounds : ndarray of shape (n + 1,) or None, default=None
        :func:`calibration_conditional_bounds` for the calibration-conditional p-values;
        None gives the marginal ones.
    rtol : float or None, default=None
        Scores within ``rtol`` (relative) of each other tie (:func:`skood.base.tie_rtol`).
        None: from the arrays' dtype, float32 if either is float32 (1e-6), else float64
        (1e-12). Pass ``tie_rtol(np.float32)`` for a network's scores returned as float64.

    Returns
    -------
    ndarray of float64, shape (m,)
        ``(1 + #{i : S_i <= s}) / (n + 1)``, or ``bounds[#{i : S_i <= s}]``.

    Examples
    --------
    >>> conformal_p_values([1.0, 2.0, 2.0, 3.0], [0.5, 2.0, 9.0])
    array([0.2, 0.8, 1. ])
    """
    if rtol is None:
        rtol = max(tie_rtol(_float_dtype(calibration_scores)), tie_rtol(_float_dtype(scores)))
    calibration = np.sort(np.asarray(calibration_scores, dtype=np.float64).ravel())
    ranks = _ranks(calibration, np.asarray(scores, dtype=np.float64), rtol)
    if bounds is not None:
        return np.asarray(bounds, dtype=np.float64)[ranks]
    return (1.0 + ranks) / (calibration.size + 1.0)


def _float_dtype(values) -> np.dtype:
    """The dtype ``values`` were computed in: an array's own, float64 for Python numbers."""
    dtype = getattr(values, "dtype", None)
    return np.dtype(dtype) if dtype is not None and dtype.kind == "f" else np.dtype(np.float64)


def _ranks(sorted_calibration: np.ndarray, scores: np.ndarray, rtol: float) -> np.ndarray:
    """``#{i : S_i <= s}`` per score, ties within ``rtol`` (relative) included."""
    return np.searchsorted(sorted_calibration, tie_ceiling(scores, rtol), side="right")


def calibration_conditional_bounds(n: int, delta: float, method: str = "simes") -> np.ndarray:
    """Increasing bounds ``b_i`` with ``P(U_(i) <= b_i for all i) >= 1 - delta``; ``b_{n+1} = 1``.

    ``U_(1) <= ... <= U_(n)`` are the order statistics of ``n`` independent uniforms: the
    conditional false-positive rate of the marginal p-value ``k / (n + 1)`` given the
    calibration rows is distributed as ``U_(k)``. Replacing that p-value by ``b_k`` (Bates et al.,
    Section 3) gives p-values valid *conditionally* on the calibration draw with probability
    ``1 - delta``.

    Parameters
    ----------
    n : int >= 0
        Number of calibration rows (with none, the only bound is ``b_1 = 1``).
    delta : float in (0, 1)
    method : {"simes", "dkwm"}
        ``"simes"``: the generalised Simes inequality with ``k = ceil(n / 2)`` (the paper's
        recommendation), ``b_{n+1-i} = 1 - delta^{1/k} (i (i-1) ... (i-k+1) /
        (n (n-1) ... (n-k+1)))^{1/k}`` for ``i >= k`` (and ``b = 1`` for ``i < k``);
        ``"dkwm"``: the Dvoretzky–Kiefer–Wolfowitz–Massart band,
        ``b_i = min(1, i / n + sqrt(log(1 / delta) / (2 n)))``.

    Returns
    -------
    ndarray of float64, shape (n + 1,)
        Indexed by the number of calibration scores ``<= s``: entry ``r`` is ``b_{r+1}``.

    Examples
    --------
    >>> import numpy as np
    >>> np.round(calibration_conditional_bounds(4, delta=0.1, method="dkwm"), 3)
    array([0.786, 1.   , 1.   , 1.   , 1.   ])
    >>> bounds = calibration_conditional_bounds(99, delta=0.1)
    >>> bounds.shape, bool(np.all(bounds >= np.arange(1, 101) / 100))  # above the marginal ones
    ((100,), True)
    >>> calibration = np.arange(1.0, 100.0)
    >>> conformal_p_values(calibration, [0.5], bounds=bounds).round(3)  # marginal: 0.01
    array([0.045])
    """
    if method not in ("simes", "dkwm"):
        raise ValueError(f"method must be 'simes' or 'dkwm', got {method!r}")
    if n == 0:  # no calibration row (both formulas divide by n): the only p-value is 1
        return np.ones(1)
    if method == "dkwm":
        i = np.arange(1, n + 1)
        bounds = np.minimum(1.0, i / n + math.sqrt(math.log(1.0 / delta) / (2.0 * n)))
    else:
        k = math.ceil(n / 2)
        bounds = np.ones(n)
        # b_{n+1-i} for i = k..n, from the log of the falling factorials i (i-1) ... (i-k+1) =
        # Gamma(i + 1) / Gamma(i - k + 1): O(n), where summing the k factors per i was O(n^2)
        # (7 s at n = 10,000, on every score_samples).
        i = np.arange(k, n + 1)
        log_ratio = (gammaln(i + 1) - gammaln(i - k + 1)) - (gammaln(n + 1) - gammaln(n - k + 1))
        bounds[n - i] = -np.expm1((math.log(delta) + log_ratio) / k)
    return np.append(np.maximum.accumulate(bounds), 1.0)


def storey_null_proportion(p_values, threshold: float = 0.5) -> float:
    """Storey's estimate of the share of inliers (true nulls) in a batch of p-values.

    ``pi0 = (1 + #{i : p_i >= threshold}) / (m (1 - threshold))``: inliers' p-values are
    uniform, so the share above ``threshold`` estimates ``pi0 (1 - threshold)``; outliers'
    p-values sit near 0 and barely count. This is the estimator with which BH at level
    ``alpha / pi0`` on conformal p-values controls the FDR in finite samples (Marandon, Lei,
    Mary and Roquain 2024, Section 3.3; the ``+ 1`` is Storey, Taylor and Siegmund's, JRSS-B
    2004), and two details matter:

    * it is **not capped at 1**: with few or no outliers it exceeds 1 and BH runs *below*
      ``alpha``, which pays for the batches where it falls below 1 by chance. Capped, the FDR of
      batches with no outlier exceeded ``alpha`` (0.112 against 0.098 uncapped at ``alpha =
      0.1``, 100,000 draws; ``benchmarks/conformal/adadetect.md``);
    * it counts ``p >= threshold``: conformal p-values sit on the grid ``k / (n + 1)``, which can
      hold ``threshold``; counting those rows makes the estimate larger (more conservative).

    Parameters
    ----------
    p_values : array-like of shape (m,)
    threshold : float in (0, 1), default=0.5
        Storey's ``lambda``.

    Returns
    -------
    float > 0
        1 for an empty batch.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.r_[np.full(20, 0.001), np.linspace(0.01, 1, 80)]  # 20 outliers, 80 inliers
    >>> round(storey_null_proportion(p), 3)
    0.82
    >>> storey_null_proportion(np.full(10, 0.9))  # no outlier: above 1, BH runs below alpha
    2.2
    """
    p_values = np.asarray(p_values, dtype=np.float64).ravel()
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    if p_values.size == 0:
        return 1.0
    above = np.count_nonzero(p_values >= threshold)
    return float((1.0 + above) / (p_values.size * (1.0 - threshold)))


def benjamini_hochberg(p_values, alpha: float, *, null_proportion: float = 1.0) -> np.ndarray:
    """The rows Benjamini–Hochberg rejects at false discovery rate ``alpha``.

    Parameters
    ----------
    p_values : array-like of shape (m,)
    alpha : float in (0, 1)
    null_proportion : float > 0, default=1.0
        An estimate of the share of inliers in the batch (e.g.
        :func:`storey_null_proportion`, which may exceed 1): BH then runs at level
        ``alpha / null_proportion`` (adaptive BH), which flags more when many rows are
        outliers. 1 is plain BH.

    Returns
    -------
    ndarray of bool, shape (m,)
        True where the row is flagged (a discovery). With conformal p-values, the expected share
        of inliers among the flagged rows is at most ``alpha`` (Bates et al., Theorem 3).

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([0.001, 0.008, 0.035, 0.039, 0.6])
    >>> benjamini_hochberg(p, alpha=0.05)  # step-up: 0.039 <= 4 * 0.05 / 5 flags the 4 smallest
    array([ True,  True,  True,  True, False])
    >>> p <= 0.05 / 5  # Bonferroni (family-wise error rate) flags fewer
    array([ True,  True, False, False, False])
    """
    p_values = np.asarray(p_values, dtype=np.float64)
    if not (null_proportion > 0.0 and math.isfinite(null_proportion)):
        raise ValueError(f"null_proportion must be finite and > 0, got {null_proportion!r}")
    if p_values.size == 0:
        return np.zeros(0, dtype=bool)
    return false_discovery_control(p_values, method="bh") <= alpha / null_proportion


def detector_scores(model, X) -> np.ndarray:
    """A fitted detector's scores, higher = more normal, in the dtype it computed them in.

    Parameters
    ----------
    model : fitted estimator
        A skood or scikit-learn detector (``score_samples``, else ``decision_function``), a
        PyOD detector (its ``decision_function`` negated), a ``Pipeline`` ending in one, or a
        ``FrozenEstimator`` of one.
    X : array-like of shape (n_samples, n_features)

    Returns
    -------
    ndarray of float32 or float64, shape (n_samples,)
        float32 kept where the detector returned it: its precision sets the tie tolerance
        (:func:`detector_tie_rtol`).
    """
    last = _last_step(model)
    if type(last).__module__.startswith("pyod."):  # PyOD: higher = more abnormal
        from skood.registry import pyod_scores

        return pyod_scores(model, X)
    if hasattr(model, "score_samples"):
        return _as_float(model.score_samples(X))
    if hasattr(model, "decision_function"):
        return _as_float(model.decision_function(X))
    raise TypeError(
        f"ConformalDetector: {type(last).__name__} has neither score_samples nor "
        "decision_function, so it gives no score to calibrate."
    )


def detector_tie_rtol(model, scores) -> float:
    """How close two of ``model``'s scores must be (relative) to tie.

    A skood estimator declares the precision it computes in; another's is the dtype its
    scoring method returned (PyOD's, cast by :func:`skood.registry.pyod_scores`, counts as
    float32: its deep detectors are torch networks). See :func:`skood.base.tie_rtol`.

    Parameters
    ----------
    model : fitted estimator
    scores : ndarray
        What :func:`detector_scores` returned for ``model``.

    Returns
    -------
    float
    """
    last = _last_step(model)
    if _is_skood(last):
        return tie_rtol(getattr(last, "_score_dtype", np.float32))
    if type(last).__module__.startswith("pyod."):
        return tie_rtol(np.float32)
    return tie_rtol(scores.dtype)


def fit_detector(estimator, X, y, rows):
    """Fit ``estimator`` on the ``rows`` (boolean mask) of ``X`` that a calibration leaves to train.

    A skood estimator (or a Pipeline ending in one) sees those rows with their labels, the
    ``-1`` outlier rows too (outlier exposure uses them); any other detector sees their inliers
    only. A skood estimator's warning that too few of its calibration scores reach its
    ``contamination`` is silenced: its own ``offset_`` is not what flags here.

    Parameters
    ----------
    estimator : estimator
        Unfitted (a clone).
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or None
    rows : ndarray of bool, shape (n_samples,)

    Returns
    -------
    estimator
        Fitted.
    """
    if _is_skood(_last_step(estimator)):
        y_rows = None if y is None else _safe_indexing(np.asarray(y), rows)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*contamination=.* asks offset_ to")
            return estimator.fit(_safe_indexing(X, rows), y_rows)
    if y is not None:
        rows = rows & ~is_outlier_label(y)
    return estimator.fit(_safe_indexing(X, rows))


def _is_skood(estimator) -> bool:
    return type(estimator).__module__.startswith("skood.")


def _is_frozen(estimator) -> bool:
    from sklearn.frozen import FrozenEstimator

    return isinstance(estimator, FrozenEstimator)


def _last_step(estimator):
    """The detector that scores: a Pipeline's last step, a FrozenEstimator's estimator."""
    if _is_frozen(estimator):
        estimator = estimator.estimator
    return estimator[-1] if hasattr(estimator, "steps") else estimator


class ConformalDetector(OutlierMixin, BaseEstimator):
    """Conformal p-values for any detector: a false-positive rate, or an FDR, you can state.

    Read more in the :ref:`User Guide <paper_conformal>`.

    Wraps a detector (a skood estimator, scikit-learn's ``IsolationForest`` /
    ``LocalOutlierFactor(novelty=True)`` / ``OneClassSVM``, a PyOD detector, or a ``Pipeline``
    ending in one) and turns its scores into the split-conformal p-values of Bates et al. (2023):
    ``score_samples`` returns them (higher = more normal, in ``(0, 1]``), ``predict`` flags a row
    when its p-value is at most ``alpha`` (a false-positive rate of at most ``alpha`` for
    inliers exchangeable with the calibration rows, in expectation over calibration sets; with
    ``calibration_conditional``, with probability ``1 - delta`` for this calibration set), and
    with ``fdr=True`` flags the Benjamini–Hochberg discoveries of the batch instead (a false
    discovery rate of at most ``alpha``).

    Parameters
    ----------
    estimator : estimator
        Fitted on the training rows. Its scores come from ``score_samples`` (higher = more
        normal), else ``decision_function``; a PyOD detector's ``decision_function`` (higher =
        more abnormal) is negated. An already fitted detector wrapped in scikit-learn's
        ``FrozenEstimator`` is not fitted again: every inlier row ``fit`` is given calibrates
        it (give rows it never trained on), as ``CalibratedClassifierCV`` does with one.
    alpha : float in (0, 1), default=0.05
        The level: ``predict`` flags rows with a p-value ``<= alpha`` (or, with ``fdr``, the
        BH discoveries at FDR ``alpha``). It may be changed on a fitted model with
        ``set_params`` (nothing is refitted); ``predict``, ``decision_function`` and
        ``offset_`` validate it as ``fit`` does, and refuse a level no p-value can reach.
    fdr : bool or {"bh", "storey"}, default=False
        ``predict`` applies Benjamini–Hochberg to the rows it is given together: its flags then
        depend on the batch (``decision_function`` stays the per-row level test). True or
        ``"bh"``: plain BH (FDR at most ``alpha`` times the share of inliers in the batch);
        ``"storey"``: adaptive BH at level ``alpha / pi0``, with Storey's estimate ``pi0`` of
        that share (:func:`storey_null_proportion`), which flags more when a batch holds many
        outliers and keeps the FDR at most ``alpha`` (Marandon, Lei, Mary and Roquain 2024,
        for conformal p-values). Like ``alpha``, it may be changed on a fitted model.
    method : {"split", "cross"}, default="split"
        ``"split"``: one model, calibrated on inliers it never saw. A skood estimator that holds
        its own calibration inliers out (``calibration_held_out_``) is fitted on every row and
        its ``calibration_scores_`` are reused, if there are enough of them to reach ``alpha``
        (``(n + 1) alpha >= 1``); any other estimator is fitted on the rows
        ``calibration_fraction`` leaves, and scores the rest. ``"cross"``: ``n_splits``
        models, each calibrated on the inliers of the fold it was not fitted on (cross-conformal
        p-values, Vovk 2015): every inlier row both trains and calibrates, for small data, with
        the weaker guarantee ``P(p <= alpha) <= 2 alpha`` plus a term of order ``1 / n`` (Barber,
        Candès, Ramdas and Tibshirani, 2021); in practice it is close to ``alpha``.
    calibration_fraction : float in (0, 1), default=0.3
        ``"split"``: the share of inlier rows held out to calibrate (when the estimator does not
        hold out its own).
    n_splits : int >= 2, default=5
        ``"cross"``: the number of folds.
    class_conditional : bool, default=False
        Mondrian calibration: the inlier rows of each class (their label in ``y``) calibrate
        a p-value per class, and a row's p-value is the largest over the classes. For each
        class ``c``, ``P(p(X) <= alpha | Y = c) <= alpha``: the guarantee holds per class, which
        a pooled calibration does not give when the classes are scored differently. Every
        class needs ``n_c + 1 >= 1 / alpha`` calibration inliers (marginal p-values; more with
        ``calibration_conditional``), else no row can be flagged and ``fit`` refuses, naming
        the class.
    calibration_conditional : {None, "simes", "dkwm"}, default=None
        ``"split"`` only: replace the marginal p-values by ones valid conditionally on the
        calibration rows (Bates et al., Section 3): with probability ``1 - delta`` over the
        calibration draw, the false-positive rate at any level ``alpha`` is at most ``alpha``
        (the marginal guarantee holds only on average over draws). See
        :func:`calibration_conditional_bounds`; more conservative, more so for small ``n``.
    delta : float in (0, 1), default=0.1
        The ``delta`` of ``calibration_conditional`` (at most 0.5 for ``"dkwm"``, whose
        one-sided bound is proved there).
    labeling_budget : int >= 0, default=0
        For training rows that may hold unlabelled outliers (a contaminated reference set):
        the number ``m`` of calibration rows a person will review, Label-Trim of Bashari,
        Sesia and Romano (ICML 2025). ``fit`` lists in ``review_rows_`` the ``m`` calibration
        rows that look least normal (lowest scores); :meth:`trim_calibration` takes their
        labels and drops those found to be outliers from the calibration set. Outliers among
        the calibration rows make the plain p-values conservative (fewer flags than ``alpha``
        allows, and less power: the paper's Lemma, for outliers that score lower than
        inliers); removing only the reviewed outliers recovers power while keeping the
        false-positive rate near ``alpha`` (their Theorem 3.1 bounds the excess; measured in
        :doc:`/user_guide/papers/conformal`). Removing the lowest-scoring rows *without*
        review (naive trimming) is not offered: it lowers every p-value and breaks the
        guarantee. ``"split"`` only, and not with ``class_conditional`` or
        ``calibration_conditional`` (the analysis covers neither). 0: no review.
    random_state : int, RandomState or None, default=None
        The calibration split and the folds.

    Attributes
    ----------
    estimator_ : estimator
        ``"split"``: the fitted detector.
    estimators_ : list of estimator
        ``"cross"``: the fold models.
    calibration_scores_ : ndarray or list of ndarray
        The calibration scores: sorted (``"split"``), or one array per fold (``"cross"``); per
        class with ``class_conditional`` (``classes_`` gives the order).
    classes_ : ndarray
        ``class_conditional`` only: the inlier classes.
    n_calibration_ : int
        The number of calibration inliers (per class: the smallest).
    possible_p_values_ : ndarray
        Every value ``score_samples`` can return, sorted (per class: only those at or above
        the largest of the classes' smallest p-values, as a row's p-value is the largest
        over the classes).
    offset_ : float
        The smallest of them above ``alpha``: ``decision_function = score_samples - offset_`` is
        negative exactly when the p-value is at most ``alpha``. ``alpha`` and ``fdr`` may be
        changed with ``set_params`` after fitting: nothing is refitted, and ``offset_`` follows.
    reused_calibration_ : bool
        Whether the estimator's own held-out calibration scores were reused.
    calibration_rows_ : ndarray of int
        ``labeling_budget > 0``: the rows of ``X`` (positions in what ``fit`` was given) that
        calibrate.
    review_rows_ : ndarray of int, shape (labeling_budget,)
        ``labeling_budget > 0``: the calibration rows to review, lowest score first.
    review_scores_ : ndarray of float64, shape (labeling_budget,)
        ``labeling_budget > 0``: their scores.
    review_outliers_ : ndarray of bool, shape (labeling_budget,)
        ``labeling_budget > 0``: the verdict :meth:`trim_calibration` was given (all false
        until it is called).
    n_trimmed_ : int
        ``labeling_budget > 0``: the reviewed rows :meth:`trim_calibration` dropped as
        outliers (0 until it is called).
    tie_rtol_ : float
        Calibration and new scores within this relative distance tie: 1e-6 for scores computed
        in float32 (a network), 1e-12 for float64 (:func:`skood.base.tie_rtol`).

    Notes
    -----
    ``alpha`` and ``fdr`` may be changed on a fitted model; the methods that read them validate
    them as ``fit`` does. ``method``, ``class_conditional``, ``calibration_conditional`` and
    (with it) ``delta`` define the fitted models and calibration rows: changed on a fitted
    model, scoring refuses until it is fitted again (or they are set back).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.ensemble import IsolationForest
    >>> from skood.conformal import ConformalDetector
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 2))
    >>> det = ConformalDetector(IsolationForest(random_state=0), alpha=0.1, random_state=0)
    >>> p = det.fit(X).score_samples(np.array([[0.0, 0.0], [6.0, 6.0]]))
    >>> bool(p[0] > 0.1), bool(p[1] <= 0.1)
    (True, True)
    """

    #: What ``predict`` and ``offset_`` read, and may change on a fitted model: nothing depends
    #: on them until a p-value is compared with ``alpha``.
    _level_params = ("alpha", "fdr")

    #: What ``score_samples`` reads that also shaped the fit (the models, the calibration rows,
    #: ``possible_p_values_``): fixed from ``fit`` on (``_scoring_params`` says which apply).
    _calibration_params = (
        "labeling_budget",
        "method",
        "class_conditional",
        "calibration_conditional",
        "delta",
    )

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"])],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "fdr": ["boolean", StrOptions({"bh", "storey"})],
        "method": [StrOptions({"split", "cross"})],
        "calibration_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_splits": [Interval(Integral, 2, None, closed="left")],
        "class_conditional": ["boolean"],
        "calibration_conditional": [StrOptions({"simes", "dkwm"}), None],
        "delta": [Interval(Real, 0, 1, closed="neither")],
        "labeling_budget": [Interval(Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator,
        *,
        alpha=0.05,
        fdr=False,
        method="split",
        calibration_fraction=0.3,
        n_splits=5,
        class_conditional=False,
        calibration_conditional=None,
        delta=0.1,
        labeling_budget=0,
        random_state=None,
    ):
        self.estimator = estimator
        self.alpha = alpha
        self.fdr = fdr
        self.method = method
        self.calibration_fraction = calibration_fraction
        self.n_splits = n_splits
        self.class_conditional = class_conditional
        self.calibration_conditional = calibration_conditional
        self.delta = delta
        self.labeling_budget = labeling_budget
        self.random_state = random_state

    # -- fitting ---------------------------------------------------------------------------------
    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the detector and calibrate the p-values on inlier rows it never saw.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            ``-1`` marks an outlier row (passed on to a skood estimator that uses them, never
            calibrated on); other values are inlier labels, the classes of
            ``class_conditional``.

        Returns
        -------
        self : ConformalDetector
        """
        name = type(self).__name__
        X = _as_rows(X, name)
        if self.calibration_conditional is not None and self.method != "split":
            raise ValueError(
                f"{name}: calibration_conditional needs method='split' (the correction is "
                "proved for one model calibrated on held-out rows)."
            )
        if self.calibration_conditional == "dkwm" and self.delta > 0.5:
            raise ValueError(
                f"{name}: delta={self.delta} with calibration_conditional='dkwm': the one-sided "
                "DKWM bound (Massart's constant) is proved for delta <= 0.5. Use delta <= 0.5, "
                "or calibration_conditional='simes', which holds for any delta."
            )
        if _is_frozen(self.estimator) and self.method != "split":
            raise ValueError(
                f"{name}: a FrozenEstimator is one fitted model, calibrated on every row given "
                "to fit; method='cross' refits one per fold. Use method='split'."
            )
        if self.labeling_budget and (
            self.method != "split" or self.class_conditional or self.calibration_conditional
        ):
            raise ValueError(
                f"{name}: labeling_budget (Label-Trim, Bashari et al. 2025) needs method='split' "
                "without class_conditional or calibration_conditional: its guarantee is proved "
                "for one model and one pooled calibration set with marginal p-values."
            )
        n = _num_samples(X)
        inliers, labels = split_labels(y, n, name)
        if self.class_conditional and labels is None:
            raise ValueError(f"{name}(class_conditional=True) needs y with the inlier classes.")
        codes = None
        if self.class_conditional:
            self.classes_, codes = np.unique(labels, return_inverse=True)
        rng = check_random_state(self.random_state)
        if self.method == "cross":
            self._fit_cross(X, y, inliers, codes, rng)
        else:
            self._fit_split(X, y, inliers, codes, rng)
        fitted = self.estimators_[0] if self.method == "cross" else self.estimator_
        if hasattr(fitted, "n_features_in_"):
            self.n_features_in_ = fitted.n_features_in_
        if hasattr(fitted, "feature_names_in_"):  # fitted on a DataFrame: its columns, by name
            self.feature_names_in_ = fitted.feature_names_in_
        self._calibrated_with_ = {k: getattr(self, k) for k in self._calibration_params}
        self._set_level()
        return self

    def _fit_split(self, X, y, inliers, codes, rng) -> None:
        # A bare skood estimator's own held-out scores are reused (in a Pipeline, the steps
        # before it were fitted on its calibration rows too, so they are not held out).
        # With a labeling budget the calibration rows must be known by position (to list those
        # to review), which an estimator's own held-out rows are not.
        if _is_skood(self.estimator) and not self.class_conditional and not self.labeling_budget:
            all_rows = np.ones(len(inliers), dtype=bool)
            self.estimator_ = fit_detector(clone(self.estimator), X, y, all_rows)
            scores = getattr(self.estimator_, "calibration_scores_", np.empty(0))
            # Reused only if they can reach alpha: an ensemble's 10 % of a small table (17
            # rows: smallest p-value 1/18 > 0.05) would make every level refused, whatever
            # calibration_fraction says; this split holds out enough instead.
            if (
                getattr(self.estimator_, "calibration_held_out_", False)
                and (len(scores) + 1) * self.alpha >= 1
            ):
                self.reused_calibration_ = True
                self.calibration_scores_ = np.asarray(scores, dtype=np.float64)
                self.tie_rtol_ = detector_tie_rtol(self.estimator_, scores)
                return
        inlier_rows = np.flatnonzero(inliers)
        if _is_frozen(self.estimator):  # fitted already: every inlier row calibrates
            self.estimator_ = self.estimator
            self._calibrate_split(X, inlier_rows, np.arange(inlier_rows.size), codes)
            return
        _, held = split_holdout(
            inlier_rows.size,
            self.calibration_fraction,
            rng,
            min_train=2,
            estimator_name=type(self).__name__,
            stratify=codes,
        )
        calibration = np.zeros(len(inliers), dtype=bool)
        calibration[inlier_rows[held]] = True
        self.estimator_ = fit_detector(clone(self.estimator), X, y, ~calibration)
        self._calibrate_split(X, inlier_rows, held, codes)

    def _calibrate_split(self, X, inlier_rows, held, codes) -> None:
        """Score the calibration rows ``inlier_rows[held]`` with ``estimator_``."""
        rows = np.sort(inlier_rows[held])  # the order _safe_indexing returns them in
        held = np.sort(held)
        scores = detector_scores(self.estimator_, _safe_indexing(X, rows))
        self.reused_calibration_ = False
        self.tie_rtol_ = detector_tie_rtol(self.estimator_, scores)
        scores = scores.astype(np.float64)
        if self.labeling_budget:
            self._list_rows_to_review(rows, scores)
        if codes is None:
            self.calibration_scores_ = np.sort(scores)
        else:
            held_codes = codes[held]
            self.calibration_scores_ = [
                np.sort(scores[held_codes == c]) for c in range(self.classes_.size)
            ]

    def _fit_cross(self, X, y, inliers, codes, rng) -> None:
        from sklearn.model_selection import KFold, StratifiedKFold

        inlier_rows = np.flatnonzero(inliers)
        n_splits = self.n_splits
        if codes is None:
            folds = KFold(n_splits, shuffle=True, random_state=rng.randint(2**31 - 1))
            splits = folds.split(inlier_rows)
        else:
            folds = StratifiedKFold(n_splits, shuffle=True, random_state=rng.randint(2**31 - 1))
            splits = folds.split(inlier_rows, codes)
        self.estimators_, self.calibration_scores_, self._fold_codes = [], [], []
        for _, held in splits:
            held = np.sort(held)  # the order of the rows _safe_indexing returns below
            calibration = np.zeros(len(inliers), dtype=bool)
            calibration[inlier_rows[held]] = True
            model = fit_detector(clone(self.estimator), X, y, ~calibration)
            self.estimators_.append(model)
            scores = detector_scores(model, _safe_indexing(X, calibration))
            self.tie_rtol_ = detector_tie_rtol(model, scores)
            self.calibration_scores_.append(scores.astype(np.float64))
            self._fold_codes.append(None if codes is None else codes[held])
        self.reused_calibration_ = False

    def _list_rows_to_review(self, rows: np.ndarray, scores: np.ndarray) -> None:
        """Record the calibration rows and the ``labeling_budget`` of them that score lowest."""
        if self.labeling_budget > rows.size:
            raise ValueError(
                f"{type(self).__name__}: labeling_budget={self.labeling_budget} is more than the "
                f"{rows.size} calibration rows; review at most {rows.size} (or raise "
                "calibration_fraction)."
            )
        order = np.argsort(scores, kind="stable")  # lowest score (most suspicious) first
        self.calibration_rows_ = rows
        self.review_rows_ = rows[order[: self.labeling_budget]]
        self.review_scores_ = scores[order[: self.labeling_budget]]
        self.review_outliers_ = np.zeros(self.labeling_budget, dtype=bool)
        self.n_trimmed_ = 0

    def trim_calibration(self, is_outlier):
        """Drop the reviewed calibration rows found to be outliers (Label-Trim).

        Bashari, Sesia and Romano, "Robust conformal outlier detection under contaminated
        reference data", ICML 2025, Algorithm 1: the ``m = labeling_budget`` calibration rows
        with the lowest scores are reviewed, and those labelled outliers leave the calibration
        set; every other calibration row stays, outlier or not. The p-values then use the rows
        left. Reviewing exactly those ``m`` rows matters: their selection by score is what the
        paper's bound on the false-positive rate accounts for.

        Parameters
        ----------
        is_outlier : array-like of bool or {0, 1}, shape (labeling_budget,)
            The review's verdict for each row of ``review_rows_``, in that order: true (1)
            where the row is an outlier. Every listed row must be labelled.

        Returns
        -------
        self : ConformalDetector
            With ``calibration_scores_``, ``n_calibration_``, ``possible_p_values_`` and
            ``n_trimmed_`` updated. Calling it again replaces the previous verdict.
        """
        self._check_params(self._scoring_params)
        name = type(self).__name__
        if not self.labeling_budget:
            raise ValueError(
                f"{name} was fitted with labeling_budget=0, so no calibration row was listed for "
                "review. Fit with labeling_budget=m to review the m most suspicious rows."
            )
        verdict = np.asarray(is_outlier)
        if verdict.shape != (self.labeling_budget,):
            raise ValueError(
                f"{name}.trim_calibration: is_outlier has shape {verdict.shape}, but "
                f"review_rows_ lists {self.labeling_budget} rows; give one verdict per listed row, "
                "in the order of review_rows_ (the guarantee needs all of them reviewed)."
            )
        if verdict.dtype.kind == "f" and np.isnan(verdict).any():
            raise ValueError(
                f"{name}.trim_calibration: {int(np.isnan(verdict).sum())} of the listed rows have "
                "no verdict (NaN). Review every row of review_rows_: trimming only some of them "
                "is not the procedure whose false-positive rate is bounded."
            )
        if verdict.dtype != bool and not np.isin(verdict, (0, 1)).all():
            raise ValueError(
                f"{name}.trim_calibration: is_outlier must hold booleans or 0 / 1 (1 = outlier); "
                f"got the values {np.unique(verdict)[:5].tolist()}."
            )
        verdict = verdict.astype(bool)
        # The rows a previous verdict dropped come back first: a new verdict replaces it.
        every = np.r_[self.calibration_scores_, self.review_scores_[self.review_outliers_]]
        kept = _remove(np.sort(every), self.review_scores_[verdict])
        self.calibration_scores_ = kept
        self.review_outliers_ = verdict
        self.n_trimmed_ = int(verdict.sum())
        self._set_level()
        return self

    def _set_level(self) -> None:
        """Record the p-values this detector can return and check ``alpha`` is reachable."""
        sizes = self._calibration_sizes()
        self.n_calibration_ = int(min(sizes))
        self.possible_p_values_ = self._possible_p_values(sizes)
        self._check_level()

    @property
    def _scoring_params(self) -> tuple[str, ...]:
        # delta is read only by the calibration-conditional bounds: without them, changing it
        # is harmless, and refusing it would be a false alarm.
        if self.calibration_conditional is None:
            return self._calibration_params[:-1]
        return self._calibration_params

    def _check_params(self, names) -> None:
        """Validate the parameters ``names`` that a scoring method is about to read.

        ``set_params`` validates nothing, so a value set on a fitted model (as ``skood score
        --model m.skood --alpha X`` does) is checked here, against the constraints ``fit``
        checks, with the same message. A parameter that shaped the fit must also still have
        its fitted value: scoring with another would mix two calibrations.
        """
        check_is_fitted(self)
        validate_parameter_constraints(
            {k: self._parameter_constraints[k] for k in names},
            {k: getattr(self, k) for k in names},
            caller_name=type(self).__name__,
        )
        # Models fitted before the record existed carry none and are trusted as they are.
        recorded = getattr(self, "_calibrated_with_", {})
        changed = [k for k in names if k in recorded and getattr(self, k) != recorded[k]]
        if changed:
            then = ", ".join(f"{k}={recorded[k]!r}" for k in changed)
            now = ", ".join(f"{k}={getattr(self, k)!r}" for k in changed)
            raise ValueError(
                f"{type(self).__name__} was fitted with {then}, but now has {now}. These define "
                "the fitted models and calibration rows, so fit again (or set them back); only "
                "alpha and fdr can change on a fitted model."
            )

    def _check_level(self) -> None:
        """Refuse a level ``alpha`` that no p-value can reach: ``predict`` would flag nothing."""
        alpha, name, smallest = self.alpha, type(self).__name__, self.possible_p_values_[0]
        if smallest <= alpha:
            return
        need = f"marginal p-values need n + 1 >= 1 / alpha: {math.ceil(1 / alpha) - 1} or more"
        more = "; calibration-conditional ones need more" if self.calibration_conditional else ""
        if not self.class_conditional:
            raise ValueError(
                f"{name}: with {self.n_calibration_} calibration inliers the smallest p-value is "
                f"{smallest:.4g}, so level alpha={alpha} can never be reached ({need} "
                f"calibration inliers{more}). Give more inlier rows, raise calibration_fraction, "
                "or raise alpha."
            )
        # A row's p-value is the largest of its per-class ones, so one class whose smallest
        # p-value is above alpha keeps every row above it: the detector would accept everything,
        # even a row far from all the data. That is refused, as in the pooled case above, rather
        # than warned about: nothing the model could then do is useful, and a warning is easily
        # lost inside a Pipeline or a search (which records a fit that raises as failed).
        short = []
        for label, n in zip(self.classes_, self._calibration_sizes()):
            floor = self._grid(n)[0]
            if floor > alpha:
                reach = f"1/({n} + 1) = " if self.calibration_conditional is None else ""
                rows = f"{n} calibration inlier" + ("" if n == 1 else "s")
                short.append(
                    f"class {_plain(label)!r} has {rows}, so the smallest level it can reach "
                    f"is {reach}{floor:.4g}"
                )
        split = "raise calibration_fraction or use method='cross' (every inlier calibrates), "
        raise ValueError(
            f"{name}(class_conditional=True): {'; '.join(short)}. A row's p-value is the largest "
            f"over the classes, so level alpha={alpha} can never be reached, not even by a row "
            f"far from all the data ({need} calibration inliers in every class{more}). Give "
            f"those classes more rows, {split if self.method == 'split' else ''}raise alpha to "
            f"at least {smallest:.4g}, merge the small classes into others, or set "
            "class_conditional=False."
        )

    @property
    def offset_(self) -> float:
        """The smallest p-value above ``alpha`` this detector can return (follows ``alpha``)."""
        self._check_params(("alpha", *self._scoring_params))
        self._check_level()
        possible = self.possible_p_values_
        return float(possible[possible > self.alpha].min(initial=1.0))

    def _calibration_sizes(self) -> list[int]:
        if self.method == "cross":
            if not self.class_conditional:
                return [sum(s.size for s in self.calibration_scores_)]
            return [
                sum(int(np.sum(c == k)) for c in self._fold_codes)
                for k in range(self.classes_.size)
            ]
        if self.class_conditional:
            return [s.size for s in self.calibration_scores_]
        return [self.calibration_scores_.size]

    def _bounds(self, n: int):
        if self.calibration_conditional is None:
            return None
        return calibration_conditional_bounds(n, self.delta, self.calibration_conditional)

    def _grid(self, n: int) -> np.ndarray:
        """The p-values ``n`` calibration inliers can give, sorted."""
        bounds = self._bounds(n)
        return np.arange(1, n + 2) / (n + 1) if bounds is None else bounds

    def _possible_p_values(self, sizes) -> np.ndarray:
        grids = [self._grid(n) for n in sizes]
        values = np.unique(np.concatenate(grids))
        # The largest of per-class p-values is never below the largest of their minima.
        return values[values >= max(grid[0] for grid in grids)]

    # -- scoring ---------------------------------------------------------------------------------
    @property
    def _rtol(self) -> float:
        # Models fitted before the record existed used the float32 tolerance for every score.
        return getattr(self, "tie_rtol_", tie_rtol(np.float32))

    def detector_scores(self, X) -> np.ndarray:
        """The wrapped detector's own scores (``"cross"``: the mean over the fold models)."""
        self._check_params(("method",))
        if self.method == "cross":
            scores = [detector_scores(m, X).astype(np.float64) for m in self.estimators_]
            return np.mean(scores, axis=0)
        return detector_scores(self.estimator_, X).astype(np.float64)

    def score_samples(self, X) -> np.ndarray:
        """Conformal p-values: higher = more normal, in ``(0, 1]``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples,)
        """
        self._check_params(self._scoring_params)
        if self.method == "split":
            scores = detector_scores(self.estimator_, X)
            if not self.class_conditional:
                bounds = self._bounds(self.calibration_scores_.size)
                return conformal_p_values(
                    self.calibration_scores_, scores, bounds=bounds, rtol=self._rtol
                )
            per_class = [
                conformal_p_values(cal, scores, bounds=self._bounds(cal.size), rtol=self._rtol)
                for cal in self.calibration_scores_
            ]
            return np.max(per_class, axis=0)
        fold_scores = [detector_scores(m, X) for m in self.estimators_]
        if not self.class_conditional:
            return self._cross_p_values(fold_scores, self.calibration_scores_, self._rtol)
        per_class = []
        for k in range(self.classes_.size):
            calibration = [
                c[codes == k] for c, codes in zip(self.calibration_scores_, self._fold_codes)
            ]
            per_class.append(self._cross_p_values(fold_scores, calibration, self._rtol))
        return np.max(per_class, axis=0)

    @staticmethod
    def _cross_p_values(fold_scores, calibration, rtol) -> np.ndarray:
        """``(1 + sum_k #{i in fold k : S_i^(k) <= s^(k)(x)}) / (n + 1)`` (cross-conformal)."""
        n = sum(c.size for c in calibration)
        counts = sum(_ranks(np.sort(c), s, rtol) for s, c in zip(fold_scores, calibration))
        return (1.0 + counts) / (n + 1.0)

    def decision_function(self, X) -> np.ndarray:
        """``score_samples(X) - offset_``: negative exactly where the p-value is ``<= alpha``."""
        offset = self.offset_  # checks alpha before any scoring work
        return self.score_samples(X) - offset

    def predict(self, X) -> np.ndarray:
        """-1 where the p-value is ``<= alpha`` (or, with ``fdr``, for BH's discoveries), else +1.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of int, shape (n_samples,)
        """
        # Before any scoring work; _check_level reads the fixed parameters too.
        self._check_params((*self._level_params, *self._scoring_params))
        self._check_level()
        p_values = self.score_samples(X)
        if self.fdr:
            self._warn_if_bh_cannot_reject(len(p_values))
        return np.where(self._flags(p_values), -1, 1)

    def _flags(self, p_values) -> np.ndarray:
        """Which of a batch's p-values ``predict`` flags: ``<= alpha``, or (BH / Storey-BH)."""
        if not self.fdr:
            return p_values <= self.alpha
        pi0 = storey_null_proportion(p_values) if self.fdr == "storey" else 1.0
        return benjamini_hochberg(p_values, self.alpha, null_proportion=pi0)

    def false_discovery_bound(self, X, *, delta: float = 0.1) -> float:
        """An upper bound on the share of inliers among the rows ``predict(X)`` flags.

        Holds with probability at least ``1 - delta`` over the calibration rows and the
        batch, for a batch of rows drawn independently of each other and of the calibration
        rows (inliers exchangeable with the calibration rows, outliers anything): a statement
        about *this* batch's false discovery proportion, where ``alpha`` bounds a rate in
        expectation. The proof: given the calibration set, each inlier of the batch is flagged
        independently with the same probability ``F``, distributed as the ``k``-th smallest
        of ``n`` uniforms, Beta(``k``, ``n + 1 - k``) (Bates et al. 2023, Section 3; ``k`` the
        number of p-values at most ``alpha`` the detector can return; ties only lower ``F``).
        So the number of flagged inliers among ``m0`` is Beta-binomial(``m0``, ``k``,
        ``n + 1 - k``), below Beta-binomial(``m``, ...) for the batch size ``m >= m0``; with
        ``v`` its ``1 - delta`` quantile, the false discovery proportion is at most
        ``min(R, v) / R`` for ``R`` flagged rows.

        Parameters
        ----------
        X : array-like of shape (m, n_features)
        delta : float in (0, 1), default=0.1

        Returns
        -------
        float in [0, 1]
            0 when no row is flagged.

        Notes
        -----
        For the per-row rule (``fdr=False``) of a ``"split"`` detector without
        ``class_conditional``: Benjamini–Hochberg's threshold depends on the batch, and a
        bound that holds for it needs an envelope over every threshold at once (Song, Jin and
        Candès 2026), which is not implemented. The bound counts every row as a possible
        inlier, so it is loose when many rows are outliers.
        """
        from scipy.stats import betabinom

        name = type(self).__name__
        self._check_params((*self._level_params, *self._scoring_params))
        if self.fdr or self.method != "split" or self.class_conditional:
            raise ValueError(
                f"{name}.false_discovery_bound bounds the per-row rule of a 'split' detector "
                "(fdr=False, class_conditional=False); Benjamini-Hochberg's batch-dependent "
                "threshold and per-class or cross-conformal p-values are not covered."
            )
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        flagged = int(np.sum(self.predict(X) == -1))
        if flagged == 0:
            return 0.0
        m, n = _num_samples(X), self.n_calibration_
        k = int(np.sum(self._grid(n) <= self.alpha))  # reachable p-values at most alpha
        # k >= 1: _check_level passed
        false_flags = betabinom.ppf(1 - delta, m, k, n + 1 - k)
        return float(min(flagged, false_flags) / flagged)

    def _warn_if_bh_cannot_reject(self, m: int) -> None:
        """Warn when BH cannot flag a lone outlier in a batch of ``m`` rows.

        With one discovery, BH's bar is ``alpha / m``; when the smallest p-value this detector
        can return is above it, a batch with few outliers gets no flag at all (nonconform warns
        of the same).
        """
        smallest = float(self.possible_p_values_[0])
        if m and smallest > self.alpha / m:
            warn_user(
                f"{type(self).__name__}: in a batch of {m} rows, Benjamini-Hochberg flags a lone "
                f"outlier only if its p-value is <= alpha / m = {self.alpha / m:.3g}, but the "
                f"smallest p-value this detector returns is {smallest:.3g} "
                f"({self.n_calibration_} calibration rows): it can flag no row unless many are "
                f"outliers. Give at least {math.ceil(m / self.alpha) - 1} calibration inliers, or "
                "score smaller batches, or raise alpha."
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = clone(self.estimator).__sklearn_tags__()
        tags.input_tags = inner.input_tags
        return tags


def _as_rows(X, name: str):
    """``X`` as something rows can be taken from; sparse input gets a clear error."""
    import scipy.sparse

    if scipy.sparse.issparse(X):
        raise TypeError(f"{name} does not support sparse input; pass a dense array.")
    if hasattr(X, "__array__") and not hasattr(X, "iloc"):
        return np.asarray(X)
    return X  # a list (of image paths, say) or a DataFrame, for the wrapped Pipeline


def _remove(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``sorted_values`` without one occurrence of each of ``values`` (all present)."""
    keep = np.ones(sorted_values.size, dtype=bool)
    for value in values:  # at most labeling_budget of them
        at = np.searchsorted(sorted_values, value, side="left")
        while not keep[at]:  # an equal value already removed: the next occurrence
            at += 1
        keep[at] = False
    return sorted_values[keep]


def _as_float(scores) -> np.ndarray:
    """Scores as a float array, float32 kept (its precision sets the tie tolerance)."""
    scores = np.asarray(scores)
    return scores if scores.dtype in (np.float32, np.float64) else scores.astype(np.float64)


def _plain(value):
    """A numpy scalar as the Python value it holds, for messages (``1``, not ``np.int64(1)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _num_samples(X) -> int:
    from sklearn.utils.validation import _num_samples as count

    return count(X)
