"""Weighted conformal p-values and Weighted Conformalized Selection under covariate shift.

Jin and Candès, "Model-free selective inference under covariate shift via weighted conformal
p-values", Biometrika 2025 (arXiv:2307.09291), in its outlier-detection setting: calibration
inliers ``X_1..X_n`` are drawn from ``P``; in the batch to screen, the inliers follow a
*covariate-shifted* ``Q`` with a known (or estimated) likelihood ratio ``w(x) = dQ/dP(x)``.
Plain split-conformal p-values (:mod:`skood.conformal`) assume the batch's inliers exchangeable
with the calibration rows, which the shift breaks: where ``Q`` puts more mass on rows the
detector scores low, unweighted p-values flag far more than ``alpha`` of the inliers.

Reweighting each calibration row by ``w(X_i)`` restores validity. With skood's scores (higher =
more normal), ``S_i`` for the calibration rows and ``S_j`` for batch row ``j``, the paper's
weighted conformal p-value is

    p_j = (sum_i w(X_i) 1{S_i < S_j} + U_j (w(X_j) + sum_i w(X_i) 1{S_i = S_j}))
          / (sum_i w(X_i) + w(X_j)),

with ``U_j ~ Uniform[0, 1)`` breaking ties: ``P(p_j <= t) <= t`` for every inlier ``j`` of ``Q``
(low scores are the evidence against "inlier", so calibration scores *below* ``S_j`` count, as
in :func:`skood.conformal.conformal_p_values`). ``U_j = 1`` gives the deterministic, slightly
larger p-value ``(sum_i w(X_i) 1{S_i <= S_j} + w(X_j)) / (sum_i w(X_i) + w(X_j))``, which with
``w = 1`` is skood's unweighted ``(1 + #{S_i <= S_j}) / (n + 1)``.

These p-values are not PRDS (the test row's own weight sits in its denominator), so
Benjamini–Hochberg on them has no finite-sample FDR guarantee. Weighted Conformalized Selection
(WCS, the paper's Algorithm 1) has one: FDR <= alpha, for any of its three pruning rules.

:func:`weighted_conformal_p_values` and :func:`weighted_conformal_selection` are the formulas;
:func:`estimate_likelihood_ratio` estimates ``w`` with a classifier between calibration and
batch covariates; :class:`WeightedConformalDetector` wraps any detector.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from skood.base import fit_context, split_holdout, split_labels, tie_ceiling, tie_rtol
from skood.conformal import (
    benjamini_hochberg,
    detector_scores,
    detector_tie_rtol,
    fit_detector,
)

__all__ = [
    "WeightedConformalDetector",
    "estimate_likelihood_ratio",
    "weighted_conformal_p_values",
    "weighted_conformal_selection",
]

#: The pruning rules of Weighted Conformalized Selection (the paper's Algorithm 1, step 3).
PRUNING = ("heterogeneous", "homogeneous", "deterministic")

#: Classifier probabilities are kept in ``[EPS, 1 - EPS]`` so an estimated ratio stays finite
#: and positive (a boosted model can return exactly 0 or 1 for a row it separates perfectly).
_PROBA_EPS = 1e-6


def _weights(w, n: int, name: str) -> np.ndarray:
    """``w`` as float64 of length ``n``; refuses non-finite or non-positive values.

    A likelihood ratio ``dQ/dP`` of 0 on a calibration row drops it silently, and one of 0 on a
    batch row means that row cannot come from ``Q`` at all; inf or NaN make every p-value NaN.
    Both are modelling errors the user must see, not values to clip.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) (one weight per row), got {w.shape}.")
    bad = ~np.isfinite(w) | (w <= 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must be finite and > 0 (a likelihood ratio dQ/dP), but {int(bad.sum())} "
            f"of {n} are not (row {first}: {float(w[first])!r}). Check the likelihood ratio: the "
            "weighted p-values assume the batch's inliers have a positive density ratio on "
            "every row."
        )
    return w


def _dtype(values) -> np.dtype:
    """The float dtype ``values`` come in (float64 for lists and Python numbers)."""
    kind = getattr(values, "dtype", np.dtype(np.float64))
    return np.dtype(kind) if np.dtype(kind).kind == "f" else np.dtype(np.float64)


def _checked_scores(s, name: str) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64).ravel()
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} must be finite; got NaN or inf.")
    return s


def weighted_conformal_p_values(
    calibration_scores,
    scores,
    calibration_weights,
    weights,
    *,
    randomize: bool = True,
    rtol=None,
    random_state=None,
) -> np.ndarray:
    """Weighted conformal p-values (Jin and Candès, 2025, eq. for ``p_j``), higher = more normal.

    Parameters
    ----------
    calibration_scores : array-like of shape (n,)
        Scores ``S_i`` of calibration inliers drawn from ``P`` (higher = more normal), from a
        model that never saw them.
    scores : array-like of shape (m,)
        Scores ``S_j`` of the rows to test.
    calibration_weights : array-like of shape (n,)
        ``w(X_i) = dQ/dP`` at the calibration rows; finite and > 0.
    weights : array-like of shape (m,)
        ``w(X_j)`` at the rows to test; finite and > 0. Only ratios matter: ``w`` may be
        known up to a constant factor.
    randomize : bool, default=True
        The paper's p-value, ties broken by ``U_j ~ Uniform[0, 1)``: exactly uniform for an
        inlier of ``Q`` when the scores have no ties. False: ``U_j = 1``, a deterministic
        p-value, larger by at most ``(w(X_j) + tied weight) / (sum_i w(X_i) + w(X_j))``, where
        scores within ``rtol`` (relative) count as ``<=``, as in
        :func:`skood.conformal.conformal_p_values` (a float32 model's rounding must not move
        it; counting more ties only raises p-values). The randomised one compares scores
        exactly, as the paper writes it.
    rtol : float or None, default=None
        ``randomize=False`` only: the relative tie tolerance (:func:`skood.base.tie_rtol`).
        None: from the arrays' dtype, float32 if either is float32 (1e-6), else 1e-10.
    random_state : int, RandomState or None, default=None
        Draws the ``U_j``.

    Returns
    -------
    ndarray of float64, shape (m,)
        In ``[0, 1]``. For an inlier ``j`` of ``Q`` independent of the calibration rows,
        ``P(p_j <= t) <= t`` for every ``t`` (the paper's Lemma 1 / Tibshirani et al., 2019).

    Examples
    --------
    >>> import numpy as np
    >>> cal = np.array([1.0, 2.0, 3.0])
    >>> weighted_conformal_p_values(cal, [2.5], [1.0, 1.0, 4.0], [2.0], randomize=False)
    array([0.5])
    >>> from skood.conformal import conformal_p_values  # w = 1: the unweighted p-value
    >>> p = weighted_conformal_p_values(cal, [2.5], np.ones(3), [1.0], randomize=False)
    >>> bool(p[0] == conformal_p_values(cal, [2.5])[0])
    True
    """
    if rtol is None:  # the coarser of the two precisions the scores were computed in
        rtol = max(tie_rtol(_dtype(calibration_scores)), tie_rtol(_dtype(scores)))
    calibration_scores = _checked_scores(calibration_scores, "calibration_scores")
    scores = _checked_scores(scores, "scores")
    cal_w = _weights(calibration_weights, calibration_scores.size, "calibration_weights")
    w = _weights(weights, scores.size, "weights")
    order = np.argsort(calibration_scores, kind="stable")
    sorted_cal = calibration_scores[order]
    # cumulative[k]: total weight of the k lowest calibration scores
    cumulative = np.concatenate(([0.0], np.cumsum(cal_w[order])))
    total = cumulative[-1] + w
    if not randomize:
        at_or_below = cumulative[
            np.searchsorted(sorted_cal, tie_ceiling(scores, rtol), side="right")
        ]
        return np.minimum(1.0, (at_or_below + w) / total)
    below = cumulative[np.searchsorted(sorted_cal, scores, side="left")]
    tied = cumulative[np.searchsorted(sorted_cal, scores, side="right")] - below
    u = check_random_state(random_state).uniform(size=scores.size)
    return np.minimum(1.0, (below + u * (w + tied)) / total)


def _bh_sizes(
    calibration_scores: np.ndarray,
    scores: np.ndarray,
    cal_w: np.ndarray,
    w: np.ndarray,
    alpha: float,
) -> np.ndarray:
    """``|R_j^(0)|`` for every ``j``: the size of BH on the paper's modified p-values.

    For batch row ``j``, the modified p-values (Algorithm 1, step 2) are ``p_j^(j) = 0`` and,
    for ``l != j``, ``p_l^(j) = (sum_i w(X_i) 1{S_i < S_l} + w(X_j) 1{S_j < S_l}) /
    (sum_i w(X_i) + w(X_j))``: row ``j`` is treated as if it were a calibration row with its
    own score. Both terms of the numerator are non-decreasing in ``S_l``, so sorting the batch
    by score once sorts every row's modified p-values: BH's step-up count is then a comparison
    of one sorted vector per ``j`` with ``alpha k / m``, with no sort per ``j`` (O(m^2) in all,
    in blocks of bounded memory; the direct transcription, one BH per ``j``, is in the tests).
    """
    m = scores.size
    order = np.argsort(calibration_scores, kind="stable")
    cumulative = np.concatenate(([0.0], np.cumsum(cal_w[order])))
    below = cumulative[np.searchsorted(calibration_scores[order], scores, side="left")]
    by_score = np.argsort(scores, kind="stable")
    s_sorted, below_sorted = scores[by_score], below[by_score]
    rank = np.empty(m, dtype=np.intp)
    rank[by_score] = np.arange(m)
    total = cumulative[-1]
    # BH at level alpha over m values: the k-th smallest must be <= alpha k / m. The 0 of row
    # j itself is the smallest, so the others fill ranks 2..m.
    thresholds = alpha * np.arange(2, m + 1) / m
    sizes = np.ones(m, dtype=np.intp)  # p_j^(j) = 0 always passes: |R_j^(0)| >= 1
    if m == 1:
        return sizes
    cols = np.arange(m - 1)
    block = max(1, (1 << 22) // m)  # about 32 MiB of float64 per block
    for start in range(0, m, block):
        rows = np.arange(start, min(start + block, m))
        src = cols[None, :] + (cols[None, :] >= rank[rows][:, None])  # skip row j itself
        values = below_sorted[src] + w[rows][:, None] * (s_sorted[src] > scores[rows][:, None])
        passes = values / (total + w[rows])[:, None] <= thresholds[None, :]
        # the largest k with the k-th smallest at or below its threshold (step-up)
        last = np.where(passes.any(axis=1), m - np.argmax(passes[:, ::-1], axis=1), 1)
        sizes[rows] = last
    return sizes


def weighted_conformal_selection(
    p_values,
    calibration_scores,
    scores,
    calibration_weights,
    weights,
    alpha: float,
    *,
    pruning: str = "heterogeneous",
    random_state=None,
) -> np.ndarray:
    """Weighted Conformalized Selection (Jin and Candès, 2025, Algorithm 1): FDR <= ``alpha``.

    1. For each batch row ``j``, BH at level ``alpha`` on the modified p-values
       ``p_j^(j) = 0``, ``p_l^(j) = (sum_i w(X_i) 1{S_i < S_l} + w(X_j) 1{S_j < S_l}) /
       (sum_i w(X_i) + w(X_j))`` (``l != j``) rejects ``R_j`` rows.
    2. First-step selection ``R1 = {j : p_j <= alpha |R_j| / m}``.
    3. Pruning, with ``xi_j`` (heterogeneous: independent ``Uniform[0, 1)``; homogeneous: one
       ``Uniform[0, 1)`` shared by every row; deterministic: ``xi_j = 1``):
       ``r* = max{r : #{j in R1 : xi_j |R_j| <= r} >= r}``, and the selection is
       ``{j in R1 : xi_j |R_j| <= r*}`` (exactly ``r*`` rows).

    Parameters
    ----------
    p_values : array-like of shape (m,)
        The weighted conformal p-values of the batch (:func:`weighted_conformal_p_values`,
        randomised as the paper's theorem assumes; the deterministic ones are larger, which
        only shrinks ``R1``).
    calibration_scores, scores, calibration_weights, weights : array-like
        As for :func:`weighted_conformal_p_values`.
    alpha : float in (0, 1)
        The target false discovery rate.
    pruning : {"heterogeneous", "homogeneous", "deterministic"}, default="heterogeneous"
        The paper's three pruning rules; all three control the FDR (the paper's Theorem 3). The
        randomised ones were the more powerful in the paper's simulations; the deterministic one
        needs no random draw. See the :doc:`measurements </evidence/conformal_shift>`.
    random_state : int, RandomState or None, default=None
        Draws the ``xi_j``. They must be independent of the p-values' tie-breaking ``U_j``: do
        not pass the same integer seed to both functions (a ``RandomState`` passed to both, in
        turn, draws fresh numbers). Reusing the seed makes ``xi_j = U_j``, and the rows with
        small p-values then survive the pruning: measured FDR 0.18 at ``alpha = 0.1``.

    Returns
    -------
    ndarray of bool, shape (m,)
        True for the selected rows (flagged as outliers): the expected share of inliers among
        them is at most ``alpha`` when the batch's inliers follow ``Q`` with ``dQ/dP = w``.

    Examples
    --------
    >>> import numpy as np
    >>> cal = np.arange(1.0, 100.0)  # 99 calibration scores 1..99, weights 1
    >>> scores = np.array([0.0, 0.5, 50.0, 80.0])  # two rows below every calibration score
    >>> p = weighted_conformal_p_values(cal, scores, np.ones(99), np.ones(4), randomize=False)
    >>> weighted_conformal_selection(
    ...     p, cal, scores, np.ones(99), np.ones(4), alpha=0.1, pruning="deterministic"
    ... )
    array([ True,  True, False, False])
    """
    if pruning not in PRUNING:
        raise ValueError(f"pruning must be one of {PRUNING}, got {pruning!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    calibration_scores = _checked_scores(calibration_scores, "calibration_scores")
    scores = _checked_scores(scores, "scores")
    p_values = np.asarray(p_values, dtype=np.float64).ravel()
    m = scores.size
    if p_values.size != m:
        raise ValueError(f"p_values has {p_values.size} entries for {m} scores.")
    cal_w = _weights(calibration_weights, calibration_scores.size, "calibration_weights")
    w = _weights(weights, m, "weights")
    rng = check_random_state(random_state)
    if m == 0:
        return np.zeros(0, dtype=bool)
    sizes = _bh_sizes(calibration_scores, scores, cal_w, w, alpha)
    first = p_values <= alpha * sizes / m
    # xi is drawn for every row (not only R1) so the draws do not depend on the data.
    if pruning == "heterogeneous":
        xi = rng.uniform(size=m)
    elif pruning == "homogeneous":
        xi = np.full(m, rng.uniform())
    else:
        xi = np.ones(m)
    metric = np.where(first, xi * sizes, np.inf)
    sorted_metric = np.sort(metric[first])
    # r* = the largest r with #{metric <= r} >= r, i.e. with the r-th smallest <= r
    ok = np.flatnonzero(sorted_metric <= np.arange(1, sorted_metric.size + 1))
    r_star = 0 if ok.size == 0 else int(ok[-1] + 1)
    return metric <= r_star


def estimate_likelihood_ratio(X_calibration, X_test, *, classifier=None, random_state=None):
    """Estimate ``w = dQ/dP`` at the calibration and test rows with a probabilistic classifier.

    A classifier is fitted to tell the test rows (label 1, from ``Q``) from the calibration rows
    (label 0, from ``P``); by Bayes' rule ``dQ/dP(x) = P(1 | x) / P(0 | x) * n_cal / n_test``.
    It is evaluated on the same rows it was fitted on (transductive, as in the paper's
    experiments with estimated weights): no row is held out, so a flexible classifier that
    memorises its rows inflates the weights; probabilities are kept in ``[1e-6, 1 - 1e-6]``.

    Parameters
    ----------
    X_calibration : array-like of shape (n, n_features)
    X_test : array-like of shape (m, n_features)
    classifier : classifier with ``predict_proba``, or None, default=None
        None: ``make_pipeline(StandardScaler(), LogisticRegression())``, chosen by measurement
        (:doc:`covariate shift </evidence/conformal_shift>`): it is exact for a logistic
        (exponential-tilt) shift, and in-sample it overfits far less than gradient boosting, whose extreme weights
        cost power without gaining validity. A classifier with a ``random_state`` parameter gets
        one drawn from ``random_state``.
    random_state : int, RandomState or None, default=None

    Returns
    -------
    calibration_weights : ndarray of shape (n,)
    test_weights : ndarray of shape (m,)
    """
    X_calibration, X_test = np.asarray(X_calibration), np.asarray(X_test)
    n, m = X_calibration.shape[0], X_test.shape[0]
    if n == 0 or m == 0:
        raise ValueError("estimate_likelihood_ratio needs at least one calibration and test row.")
    model = make_pipeline(StandardScaler(), LogisticRegression()) if classifier is None else None
    model = clone(classifier) if model is None else model
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    params = model.get_params()
    model.set_params(**{k: seed for k in params if k.split("__")[-1] == "random_state"})
    X = np.vstack([X_calibration, X_test])
    y = np.r_[np.zeros(n, dtype=int), np.ones(m, dtype=int)]
    model.fit(X, y)
    column = list(model.classes_).index(1)
    proba = np.clip(model.predict_proba(X)[:, column], _PROBA_EPS, 1.0 - _PROBA_EPS)
    w = proba / (1.0 - proba) * (n / m)
    return w[:n], w[n:]


class WeightedConformalDetector(OutlierMixin, BaseEstimator):
    """Conformal outlier detection when the batch's inliers are covariate-shifted.

    Read more in the :ref:`User Guide <paper_weighted_conformal>`.

    Jin and Candès (Biometrika 2025, arXiv:2307.09291): the detector is fitted on part of the
    inliers, the rest (drawn from ``P``) calibrate; the inliers of a batch to screen may follow
    another distribution ``Q`` of the *covariates*, with likelihood ratio ``w = dQ/dP``, given
    as a function or estimated from the batch. ``score_samples`` returns weighted conformal
    p-values; ``predict`` flags the rows of a batch selected by Weighted Conformalized
    Selection at false discovery rate ``alpha`` (or by BH, or per row at level ``alpha``).

    Parameters
    ----------
    estimator : estimator
        The detector, fitted on the training rows; its scores come from ``score_samples``
        (higher = more normal), else ``decision_function``; a PyOD detector's is negated, as in
        :class:`skood.ConformalDetector`.
    likelihood_ratio : callable or None, default=None
        ``w(X) -> ndarray of shape (n_rows,)``, ``dQ/dP`` at each row (up to a constant
        factor), finite and > 0. None: estimated on every batch by ``classifier`` between the
        calibration rows and the batch's rows (transductive: a row's p-value then depends on
        the batch it is scored in, and the batch should be large enough to estimate a shift;
        outliers in the batch enter the estimate too).
    classifier : classifier with ``predict_proba``, or None, default=None
        The weight estimator when ``likelihood_ratio`` is None; see
        :func:`estimate_likelihood_ratio` (None: standardised logistic regression).
    alpha : float in (0, 1), default=0.1
        The FDR of ``predict`` (the level for ``selection="level"``). May be changed on a
        fitted model.
    selection : {"wcs", "bh", "level"}, default="wcs"
        ``"wcs"``: Weighted Conformalized Selection, FDR <= ``alpha`` in finite samples (the
        paper's Theorem 3). ``"bh"``: Benjamini–Hochberg on the weighted p-values, cheaper
        (O(m log m) rather than O(m^2)) with no finite-sample proof (the p-values are not
        PRDS), :doc:`measured </evidence/conformal_shift>` close to WCS. ``"level"``: flag
        each row whose p-value is ``<= alpha`` (a false-positive rate, not an FDR: each inlier
        of ``Q`` is flagged with probability at most ``alpha``). May be changed on a fitted
        model.
    pruning : {"heterogeneous", "homogeneous", "deterministic"}, default="heterogeneous"
        WCS's pruning rule (:func:`weighted_conformal_selection`).
    randomize : bool, default=True
        The paper's randomised p-values (ties broken by a uniform draw), or the deterministic
        ones (``U = 1``, slightly larger).
    calibration_fraction : float in (0, 1), default=0.3
        The share of the inlier rows held out to calibrate.
    random_state : int, RandomState or None, default=None
        The calibration split, and the draws of ``score_samples`` / ``predict`` (tie-breaking
        ``U``, pruning ``xi``, the classifier's seed): an int gives the same p-values and flags
        for the same batch on every call; ``predict`` uses exactly the p-values
        ``score_samples`` returns for that batch.

    Attributes
    ----------
    estimator_ : estimator
        The fitted detector.
    calibration_scores_ : ndarray of shape (n_calibration,)
        Its scores on the calibration rows, sorted.
    X_calibration_ : ndarray of shape (n_calibration, n_features)
        The calibration rows (in the order of ``calibration_scores_``), kept to evaluate or
        estimate ``w`` there on every batch.
    calibration_weights_ : ndarray of shape (n_calibration,)
        ``likelihood_ratio`` at the calibration rows (only when it is given).
    n_calibration_ : int
    tie_rtol_ : float
        The relative tolerance within which scores tie for the deterministic p-values (from the
        precision the detector computes in, as :class:`skood.ConformalDetector` records it).
    offset_ : float
        The smallest float above ``alpha``: ``decision_function = score_samples - offset_`` is
        negative exactly where the p-value is ``<= alpha`` (the per-row test; with WCS or BH,
        ``predict`` selects from the whole batch, as :class:`skood.ConformalDetector` with
        ``fdr=True`` does).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Set when fitted on a DataFrame with string column names.

    Notes
    -----
    What is assumed: the shift is in the covariates only (an inlier's score distribution given
    ``x`` is the same under ``P`` and ``Q``), and ``w`` is right. A misestimated ``w`` costs
    validity in proportion to the error (:doc:`measured </evidence/conformal_shift>`). WCS
    costs O(m^2) time for a batch of ``m`` rows (about 1 s for ``m = 5,000``); estimating ``w``
    fits one classifier per batch.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.covariance import EllipticEnvelope
    >>> from skood.shift import WeightedConformalDetector
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 2))  # P = N(0, I); Q = N((0.5, 0), I): w = exp(x_0 / 2) / c
    >>> det = WeightedConformalDetector(
    ...     EllipticEnvelope(random_state=0), likelihood_ratio=lambda X: np.exp(0.5 * X[:, 0]),
    ...     alpha=0.1, random_state=0,
    ... ).fit(X)
    >>> batch = np.vstack([rng.normal(size=(95, 2)) + [0.5, 0], rng.normal([0, 6], 0.5, size=(5, 2))])
    >>> flags = det.predict(batch)
    >>> bool((flags[-5:] == -1).all()), int((flags[:95] == -1).sum()) <= 3
    (True, True)
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"])],
        "likelihood_ratio": [callable, None],
        "classifier": [HasMethods(["fit", "predict_proba"]), None],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "selection": [StrOptions({"wcs", "bh", "level"})],
        "pruning": [StrOptions(set(PRUNING))],
        "randomize": ["boolean"],
        "calibration_fraction": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator,
        *,
        likelihood_ratio=None,
        classifier=None,
        alpha=0.1,
        selection="wcs",
        pruning="heterogeneous",
        randomize=True,
        calibration_fraction=0.3,
        random_state=None,
    ):
        self.estimator = estimator
        self.likelihood_ratio = likelihood_ratio
        self.classifier = classifier
        self.alpha = alpha
        self.selection = selection
        self.pruning = pruning
        self.randomize = randomize
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state

    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the detector on the training rows; score and keep the calibration rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric: the covariates also feed ``likelihood_ratio`` / ``classifier``.
        y : array-like of shape (n_samples,), default=None
            ``-1`` marks an outlier row: never calibrated on, and passed on (with the training
            rows' labels) only to a skood estimator, which may use it; other estimators see the
            training inliers only.

        Returns
        -------
        self : WeightedConformalDetector
        """
        name = type(self).__name__
        X = validate_data(self, X, ensure_min_samples=3)
        inliers, _ = split_labels(y, X.shape[0], name)
        inlier_rows = np.flatnonzero(inliers)
        rng = check_random_state(self.random_state)
        _, held = split_holdout(
            inlier_rows.size, self.calibration_fraction, rng, min_train=2, estimator_name=name
        )
        calibration = np.zeros(X.shape[0], dtype=bool)
        calibration[inlier_rows[held]] = True
        self.estimator_ = fit_detector(clone(self.estimator), X, y, ~calibration)
        self.X_calibration_ = X[calibration]
        self.n_calibration_ = int(calibration.sum())
        scores = detector_scores(self.estimator_, self.X_calibration_)
        # the tie tolerance of the precision the detector computes in (float32: 1e-6)
        self.tie_rtol_ = detector_tie_rtol(self.estimator_, scores)
        scores = _checked_scores(scores, "the detector's calibration scores")
        # Kept sorted, the rows in the same order (skood.io checks a calibration_scores_ is).
        order = np.argsort(scores, kind="stable")
        self.calibration_scores_, self.X_calibration_ = scores[order], self.X_calibration_[order]
        if self.likelihood_ratio is not None:
            self.calibration_weights_ = _weights(
                self.likelihood_ratio(self.X_calibration_),
                self.n_calibration_,
                "likelihood_ratio(X_calibration)",
            )
        return self

    @property
    def offset_(self) -> float:
        """The smallest float above ``alpha``: ``score_samples - offset_ < 0`` iff ``p <= alpha``."""
        check_is_fitted(self)
        self._validate_params()
        return float(np.nextafter(self.alpha, 1.0))

    def _p_values(self, X, rng):
        """P-values of ``X`` and what WCS needs: ``(p, scores, calibration_weights, weights)``."""
        check_is_fitted(self)
        self._validate_params()
        X = validate_data(self, X, reset=False)
        # ConformalDetector's rule: score_samples, else decision_function, PyOD's negated
        scores = _checked_scores(detector_scores(self.estimator_, X), "the detector's scores")
        if self.likelihood_ratio is not None:
            cal_w = self.calibration_weights_
            w = _weights(self.likelihood_ratio(X), X.shape[0], "likelihood_ratio(X)")
        elif X.shape[0] == 0:
            cal_w, w = np.ones(self.n_calibration_), np.ones(0)
        else:
            cal_w, w = estimate_likelihood_ratio(
                self.X_calibration_, X, classifier=self.classifier, random_state=rng
            )
        p = weighted_conformal_p_values(
            self.calibration_scores_,
            scores,
            cal_w,
            w,
            randomize=self.randomize,
            rtol=self.tie_rtol_,
            random_state=rng,
        )
        return p, scores, cal_w, w

    def score_samples(self, X) -> np.ndarray:
        """Weighted conformal p-values of the rows of ``X`` (higher = more normal, in [0, 1]).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The batch; without ``likelihood_ratio``, ``w`` is estimated from it.

        Returns
        -------
        ndarray of float64, shape (n_samples,)
        """
        return self._p_values(X, check_random_state(self.random_state))[0]

    def decision_function(self, X) -> np.ndarray:
        """``score_samples(X) - offset_``: negative exactly where the p-value is ``<= alpha``."""
        offset = self.offset_
        return self.score_samples(X) - offset

    def predict(self, X) -> np.ndarray:
        """-1 for the rows selected (flagged) at FDR ``alpha`` (see ``selection``), else +1.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The batch, selected from as a whole.

        Returns
        -------
        ndarray of int, shape (n_samples,)
        """
        rng = check_random_state(self.random_state)
        p, scores, cal_w, w = self._p_values(X, rng)
        if self.selection == "level":
            flagged = p <= self.alpha
        elif self.selection == "bh":
            flagged = benjamini_hochberg(p, self.alpha)
        else:
            flagged = weighted_conformal_selection(
                p,
                self.calibration_scores_,
                scores,
                cal_w,
                w,
                self.alpha,
                pruning=self.pruning,
                random_state=rng,
            )
        return np.where(flagged, -1, 1)
