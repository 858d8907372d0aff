"""The detector contract shared by every skood estimator.

* ``score_samples(X)``: float64, finite, **higher = more normal**.
* ``decision_function(X) = score_samples(X) - offset_``; ``predict(X)`` is +1 / -1 (-1 = outlier).
* ``offset_`` comes from ``contamination`` and the *calibration scores*, the scores of inlier rows
  (:class:`CalibratedThresholdMixin`, the one place a threshold is set). They are rows held out of
  training where the estimator holds rows out (``validation_fraction > 0``, or out-of-fold scores),
  else the training rows themselves:

  - a float ``c``: the ``c``-quantile of the calibration scores in the ``n + 1`` sense (the
    ``k``-th smallest of ``n`` at ``k = c (n + 1)``, interpolated), so that in expectation a
    fraction ``c`` of new inliers exchangeable with them falls below it;
  - ``"auto"``: the method's natural boundary where its score has one (a class declares it as
    ``_natural_offset``, e.g. P(normal) = 0.5), else the :data:`AUTO_CONTAMINATION` quantile.

  The calibration scores are kept, sorted, as ``calibration_scores_``.
* ``predict`` flags a score below ``offset_``, unless it ties (within :data:`TIE_RTOL`) with
  the calibration score at which the threshold is reached: float32 scores of the same row
  differ by that much between batches. It refuses while a parameter the score reads
  (``_scoring_params``) differs from its value at fit.
* Labels: ``y == -1`` marks an outlier row; every other value is an inlier label (a class, or +1).

Nothing here knows about a particular method.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from numbers import Integral, Real

import numpy as np
from scipy.special import logsumexp, softmax
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

__all__ = [
    "AUTO_CONTAMINATION",
    "CONSTANT_RTOL",
    "CONTAMINATION_CONSTRAINT",
    "GATE_CONTAMINATION_CONSTRAINT",
    "OUTLIER_LABEL",
    "SCORE_FLOOR",
    "TIE_RTOL",
    "WIDTHS_CONSTRAINT",
    "BaseDetector",
    "CalibratedThresholdMixin",
    "LogitClassifierMixin",
    "TrainingDiverged",
    "check_calibration_scores",
    "check_class_labels",
    "check_image_shape",
    "check_no_missing_labels",
    "constant_columns",
    "finite_scores",
    "fit_context",
    "is_at_or_above",
    "is_outlier_label",
    "iter_slices",
    "missing_labels_error",
    "non_numeric_columns",
    "open_set_labels",
    "split_holdout",
    "split_labels",
    "tie_ceiling",
    "validate_numeric",
    "warn_user",
]

#: The label that marks an outlier row in ``y`` (auxiliary / outlier-exposure data, or a known
#: anomaly in a validation fold). Every other value is an inlier label.
OUTLIER_LABEL = -1

#: Scores are floored here instead of being ``-inf`` or ``NaN`` (a far outlier can overflow a
#: float32 log-likelihood). It ranks below every real score, and is small enough in magnitude that
#: ``score - offset_`` and a mean over up to ~1e200 rows stay finite.
SCORE_FLOOR = -1e100

#: Scores within this relative distance of each other are ties. A float32 network scores the
#: same row about 1e-7 apart (relative) in batches of different sizes, as BLAS kernels sum in
#: another order; measured up to 4e-7 for Deep SVDD on a constant training set (its held-out
#: calibration rows, scored as a batch of 2, landed above the same rows scored as a batch of
#: 20, and every training row was flagged). That rounding must not decide a row's side of a
#: threshold, nor move its conformal p-value.
TIE_RTOL = 1e-6


def tie_ceiling(scores) -> np.ndarray:
    """The largest value each score ties with: ``s + TIE_RTOL |s|``, as float64.

    The one place the tie rule is written: :func:`is_at_or_above` (thresholds) and
    :mod:`skood.conformal` (p-values, counting the calibration scores ``<=`` a score) use it.
    """
    scores = np.asarray(scores, dtype=np.float64)
    return scores + TIE_RTOL * np.abs(scores)


def is_at_or_above(scores, reference: float) -> np.ndarray:
    """Whether each score is at or above ``reference``, ties within :data:`TIE_RTOL` included.

    A score below ``reference`` by at most ``TIE_RTOL`` times its own magnitude is a tie and
    counts as at it: how :mod:`skood.conformal` counts the calibration scores ``<=`` a score.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
    reference : float

    Returns
    -------
    ndarray of bool, shape (n_samples,)

    Examples
    --------
    >>> is_at_or_above([-2.0, -1.0000001, -1.1], -1.0)
    array([False,  True, False])
    """
    return tie_ceiling(scores) >= reference


def fit_context(*, prefer_skip_nested_validation: bool) -> Callable:
    """sklearn's ``_fit_context`` for ``fit``, and a fit that raises leaves no trace.

    Parameters are validated as sklearn does. If ``fit`` raises anything (a diverged loss, bad
    input found late, Ctrl-C), the estimator's attributes are put back as they were before the
    call: an estimator fitted before stays fitted with its old model, an unfitted one stays
    unfitted, never half-trained with a threshold that claims otherwise.
    """

    def decorator(fit: Callable) -> Callable:
        validated_fit = _fit_context(prefer_skip_nested_validation=prefer_skip_nested_validation)(
            fit
        )

        @functools.wraps(fit)
        def wrapper(estimator, *args, **kwargs):
            before = dict(vars(estimator))
            try:
                return validated_fit(estimator, *args, **kwargs)
            except BaseException:
                vars(estimator).clear()
                vars(estimator).update(before)
                raise

        return wrapper

    return decorator


#: Frames in these folders are skood's or scikit-learn's own, never the user's code.
_INTERNAL_DIRS = tuple(
    os.path.dirname(os.path.abspath(module.__file__)) + os.sep
    for module in (sys.modules[__name__.split(".")[0]], sys.modules["sklearn"])
)


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` pointing at the user's line, not at skood's or scikit-learn's.

    A warning raised inside ``fit`` passes through skood's and sklearn's fit wrappers (and a
    ``Pipeline`` or a search): a fixed ``stacklevel`` would name one of those frames. This one
    names the first caller outside both packages.
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)


class TrainingDiverged(RuntimeError):
    """A fit whose loss or fitted outputs became non-finite (or exploded): nothing usable."""


def check_calibration_scores(scores: np.ndarray, estimator_name: str) -> None:
    """Raise :class:`TrainingDiverged` when every calibration score sits at the score floor.

    :func:`finite_scores` floors NaN and -inf at :data:`SCORE_FLOOR`; a fitted model that puts
    *every* held-out inlier there computes nothing (a diverged or overflowing model), and a
    threshold at the floor would call every row an inlier.
    """
    if scores.size and np.all(scores <= SCORE_FLOOR):
        raise TrainingDiverged(
            f"{estimator_name}: the fitted model scores every held-out inlier row as NaN or "
            "-inf, so it learned nothing usable (training diverged, or the input overflows "
            "float32). Lower lr, or standardise the input (e.g. StandardScaler first)."
        )


def finite_scores(scores) -> np.ndarray:
    """Return ``scores`` as finite float64: NaN and -inf go to :data:`SCORE_FLOOR`.

    +inf (a degenerate model claiming infinite density) is clipped to ``-SCORE_FLOOR``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    scores = np.nan_to_num(scores, nan=SCORE_FLOOR, neginf=SCORE_FLOOR, posinf=-SCORE_FLOOR)
    return np.clip(scores, SCORE_FLOOR, -SCORE_FLOOR)


def split_labels(y, n_samples: int, estimator_name: str = "this estimator"):
    """Split ``y`` by skood's label convention.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or None
        ``-1`` marks an outlier row; any other value is an inlier label. ``None`` means every
        row is an unlabelled inlier.
    n_samples : int
        Number of rows of ``X``, to check the lengths agree.
    estimator_name : str
        Used in error messages.

    Returns
    -------
    inlier_mask : ndarray of bool, shape (n_samples,)
    inlier_labels : ndarray of shape (n_inliers,) or None
        The labels of the inlier rows, or None when ``y`` is None.

    Raises
    ------
    ValueError
        When ``y`` has the wrong length or marks every row as an outlier.
    """
    if y is None:
        return np.ones(n_samples, dtype=bool), None
    y = column_or_1d(y, warn=True)
    check_consistent_length(np.empty(n_samples), y)
    check_no_missing_labels(y, estimator_name)
    is_outlier = is_outlier_label(y)
    if is_outlier.all():
        raise ValueError(
            f"y marks every row as an outlier (y == {OUTLIER_LABEL}), so {estimator_name} has no "
            f"inlier rows to learn from. In skood's convention {OUTLIER_LABEL} marks an outlier "
            "row and any other value an inlier (a class label, or +1)."
        )
    return ~is_outlier, y[~is_outlier]


def check_no_missing_labels(y: np.ndarray, estimator_name: str) -> None:
    """Raise when ``y`` holds NaN or None: such a label would silently become a class."""
    if y.dtype.kind == "f":
        missing = np.isnan(y)
    elif y.dtype.kind == "O":
        missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in y])
    else:
        return
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        raise missing_labels_error(int(missing.sum()), first, estimator_name, "NaN or None")


def missing_labels_error(
    n_missing: int, first: int, estimator_name: str, kinds: str = "NaN or None"
) -> ValueError:
    """The error for ``n_missing`` rows of ``y`` without a label, the first at row ``first``.

    :func:`check_no_missing_labels` raises it for ``y`` in memory; a Dask fit, which counts the
    missing labels block by block, raises the same.
    """
    return ValueError(
        f"y has {n_missing} missing label(s) ({kinds}; the first at row {first}), which "
        f"{estimator_name} cannot read as a class or an outlier. Label every row: "
        f"{OUTLIER_LABEL} for an outlier, a class or +1 for an inlier."
    )


def is_outlier_label(y) -> np.ndarray:
    """Boolean mask of the rows of ``y`` that carry the outlier label ``-1``."""
    y = np.asarray(y)
    if y.dtype.kind in "OUS":  # strings or objects: only the number -1 (or "-1") is an outlier
        return np.array([str(v).strip() == str(OUTLIER_LABEL) for v in y], dtype=bool)
    return y == OUTLIER_LABEL


def open_set_labels(classes: np.ndarray, class_index: np.ndarray, rejected: np.ndarray):
    """``classes[class_index]`` with rejected rows set to the outlier label ``-1``.

    For string classes the rejected label is ``"-1"`` (numpy 2 does not mix strings and integers
    in one array); unsigned or boolean classes are widened to int64 so that they can hold ``-1``.
    """
    labels = classes[class_index]
    reject = OUTLIER_LABEL
    if classes.dtype.kind in "US":
        reject = str(OUTLIER_LABEL)
        labels = labels.astype(np.result_type(labels.dtype, np.array(reject)))
    elif classes.dtype.kind in "bu":
        labels = labels.astype(np.int64)
    labels[rejected] = reject
    return labels


def non_numeric_columns(X) -> list:
    """Names of the columns of a DataFrame ``X`` that are not numeric (empty for arrays)."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is None or not hasattr(dtypes, "items"):
        return []
    return [
        str(name) for name, dtype in dtypes.items() if getattr(dtype, "kind", "O") not in "biuf"
    ]


def validate_numeric(estimator, X, **kwargs):
    """sklearn's ``validate_data``, naming the DataFrame columns that are not numeric."""
    try:
        return validate_data(estimator, X, **kwargs)
    except (ValueError, TypeError) as exc:
        columns = non_numeric_columns(X)
        if not columns:
            raise
        raise ValueError(
            f"{type(estimator).__name__} takes numeric columns only; X has non-numeric "
            f"column(s) {columns[:10]}. Encode them (e.g. OneHotEncoder in a ColumnTransformer) "
            "or drop them first."
        ) from exc


def check_image_shape(image_shape, n_features: int, owner: str) -> None:
    """Raise a clear error when flattened images of ``image_shape`` do not have ``n_features``."""
    if image_shape is not None and int(np.prod(image_shape)) != n_features:
        raise ValueError(
            f"{owner}: image_shape={tuple(image_shape)} holds {int(np.prod(image_shape))} values "
            f"per image, but X has {n_features} features. Pass flattened images of that shape "
            "(X.reshape(len(X), -1)) or fix image_shape."
        )


#: A column whose standard deviation is at most this fraction of its mean's magnitude is constant
#: up to float32 rounding (float32 resolves about 6e-8 of a value; arithmetic on the way, e.g. a
#: feature extractor's, adds a few such steps): its variation carries no information.
CONSTANT_RTOL = 1e-6


def constant_columns(X: np.ndarray, *, return_stats: bool = False):
    """Indices of the columns of ``X`` that are constant, up to float32 rounding.

    A column is constant when its standard deviation is at most :data:`CONSTANT_RTOL` times the
    magnitude of its mean (an exactly constant column, such as a dead ReLU unit, has zero
    standard deviation). Statistics are computed in float64 whatever ``X``'s dtype; with
    ``return_stats`` they are returned too, as ``(indices, column means, column stds)``.
    """
    mean = X.mean(axis=0, dtype=np.float64)
    std = X.std(axis=0, dtype=np.float64)
    constant = np.flatnonzero(std <= CONSTANT_RTOL * np.abs(mean))
    return (constant, mean, std) if return_stats else constant


def grid_steps(X: np.ndarray, *, tol: float = 0.01) -> np.ndarray:
    """Each column's grid step: the spacing its values are whole multiples of, else 0.

    Counts, ratings, pixel intensities and one-hot levels lie on a grid (after any affine
    scaling too); a column whose distinct values are all within ``tol`` grid steps of a whole
    multiple of their smallest gap gets that gap, any other column (continuous values, or a
    constant) gets 0.
    """
    steps = np.zeros(X.shape[1])
    for j in range(X.shape[1]):
        values = np.unique(X[:, j].astype(np.float64))
        if values.size < 2:
            continue
        step = np.diff(values).min()
        multiples = (values - values[0]) / step
        if np.abs(multiples - np.round(multiples)).max() <= tol:
            steps[j] = step
    return steps


def split_holdout(
    n_samples: int,
    fraction: float,
    random_state,
    min_train: int,
    estimator_name: str,
    *,
    stratify=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, held-out) row indices; the held-out rows calibrate ``offset_``.

    At least one row is held out when ``fraction > 0``, and at least ``min_train`` rows are left
    for training. With ``stratify`` (class labels, one per row) each class gives
    ``round(fraction * n_class)`` rows but keeps at least one for training, so a classifier
    trained on the rest still sees every class.
    """
    rng = check_random_state(random_state)
    if stratify is None or fraction == 0:
        n_val = max(1, round(fraction * n_samples)) if fraction > 0 else 0
        perm = rng.permutation(n_samples)
        held = perm[:n_val]
    else:
        _, codes = np.unique(np.asarray(stratify), return_inverse=True)
        held_parts = []
        for c in range(codes.max() + 1):
            rows = rng.permutation(np.flatnonzero(codes == c))
            held_parts.append(rows[: min(round(fraction * rows.size), rows.size - 1)])
        held = np.concatenate(held_parts)
        counts = np.bincount(codes)
        if held.size == 0 and counts.max() < 2:
            raise ValueError(
                f"{estimator_name} cannot hold out rows (validation_fraction={fraction}) when "
                "every class has a single row; give more rows or set validation_fraction=0."
            )
        if held.size == 0:  # every class too small for its share: take one from the largest
            held = rng.permutation(np.flatnonzero(codes == np.argmax(counts)))[:1]
        n_val = held.size
    if n_samples - n_val < min_train:
        raise ValueError(
            f"{estimator_name} needs at least {min_train + n_val} inlier rows "
            f"({min_train} to train and {n_val} held out by validation_fraction={fraction}); "
            f"got {n_samples} sample(s)."
        )
    train = np.setdiff1d(np.arange(n_samples), held)
    return train, np.sort(held)


def iter_slices(n_samples: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering ``range(n_samples)`` in blocks of ``batch_size``."""
    for start in range(0, n_samples, batch_size):
        yield slice(start, min(start + batch_size, n_samples))


#: The quantile ``contamination="auto"`` means for a method whose score has no natural boundary.
AUTO_CONTAMINATION = 0.1

#: The ``contamination`` constraint every detector shares.
CONTAMINATION_CONSTRAINT = [Interval(Real, 0, 0.5, closed="right"), StrOptions({"auto"})]


class _Widths(Options):
    """Layer widths: a tuple or list of positive ints (empty: no hidden layer).

    A subclass of sklearn's ``Options`` only because ``validate_params`` accepts no other
    constraint classes; the check itself is :meth:`is_satisfied_by`.
    """

    def __init__(self) -> None:
        super().__init__(object, set())

    def is_satisfied_by(self, val) -> bool:
        return isinstance(val, (tuple, list)) and all(
            isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in val
        )

    def __str__(self) -> str:
        return "a tuple of positive ints"


#: The constraint of every ``hidden_sizes`` parameter.
WIDTHS_CONSTRAINT = [_Widths()]

#: A classifier's gate (ICE, OpenSetClassifier) may reject any share of calibration inliers,
#: including none (0: the lowest calibration score is the threshold).
GATE_CONTAMINATION_CONSTRAINT = [Interval(Real, 0, 1, closed="left"), StrOptions({"auto"})]


class CalibratedThresholdMixin:
    """How every skood estimator turns its scores into ``offset_`` (see the module docstring).

    A class whose score has a natural boundary sets ``_natural_offset`` (the score value at that
    boundary); ``contamination="auto"`` then uses it and the method needs no held-out rows
    (:meth:`_calibration_fraction` is 0). ``fit`` ends with :meth:`_set_offset` on the
    calibration scores.
    """

    #: The score at the method's natural decision boundary, or None where it has none.
    _natural_offset: float | None = None

    #: Every parameter that ``score_samples`` reads when it scores, not only when it fits (which
    #: score to report, how class densities combine, a temperature). ``set_params`` may change
    #: them on a fitted model to compare scores without refitting, but ``offset_`` and
    #: ``calibration_scores_`` were computed with the values at fit time, so
    #: :meth:`_checked_offset` refuses to threshold with other values. A parameter the score
    #: reads only in some configurations may be declared by a property that names it only then
    #: (refusing a change that moves no score would be a false alarm). Batch sizes and devices
    #: are not declared: they move a score by float32 rounding only.
    #: ``tests/test_scoring_params.py`` checks every estimator's declaration against what its
    #: scores do.
    _scoring_params: tuple[str, ...] = ()

    def _uses_natural_offset(self) -> bool:
        return self.contamination == "auto" and self._natural_offset is not None

    def _calibration_fraction(self, fraction: float) -> float:
        """The share of inlier rows to hold out: ``fraction``, or 0 for a natural boundary."""
        return 0.0 if self._uses_natural_offset() else fraction

    def _set_offset(self, calibration_scores: np.ndarray, *, held_out: bool) -> None:
        """Keep the calibration scores (sorted) and set ``offset_`` from them.

        ``held_out`` says whether the scores come from rows the fitted scoring function never
        depended on (held out of training, or a method that trains nothing). Only then are they
        exchangeable with the scores of new inliers, which conformal p-values need
        (:mod:`skood.conformal` reuses them, else it holds rows out itself); it is kept as
        ``calibration_held_out_``.
        """
        if len(calibration_scores) == 0:
            raise ValueError(
                f"{type(self).__name__}: no calibration rows to set offset_ from. Give more "
                "inlier rows, or lower validation_fraction."
            )
        check_calibration_scores(calibration_scores, type(self).__name__)
        self.calibration_scores_ = np.sort(np.asarray(calibration_scores, dtype=np.float64))
        self.calibration_held_out_ = bool(held_out)
        self._calibrated_with_ = {name: getattr(self, name) for name in self._scoring_params}
        if self._uses_natural_offset():
            self.offset_ = float(self._natural_offset)
        else:
            q = AUTO_CONTAMINATION if self.contamination == "auto" else self.contamination
            # A new inlier falls below the k-th smallest of n exchangeable scores with probability
            # k / (n + 1): the "weibull" position k = q (n + 1) rejects q of new inliers. The
            # default (n - 1) interpolation rejects (1 - 2q) / (n + 1) more, e.g. 7.4 % instead
            # of 5 % from 36 held-out rows.
            self.offset_ = float(np.quantile(self.calibration_scores_, q, method="weibull"))
            self._warn_if_too_few_to_reach(q, len(self.calibration_scores_))

    def _warn_if_too_few_to_reach(self, q: float, n: int) -> None:
        """Warn when ``n`` calibration scores cannot reject as few as ``q`` of new inliers.

        Below position ``k = 1`` the threshold is the smallest score, under which a new inlier
        falls with probability ``1 / (n + 1)``: more than ``q`` when ``q (n + 1) < 1``, e.g. a
        third of new inliers from 2 held-out rows at ``contamination=0.1``.
        """
        if q == 0 or q * (n + 1) >= 1:
            return
        needed = math.ceil(1 / q) - 1
        warn_user(
            f"{type(self).__name__}: contamination={q:g} asks offset_ to reject {q:.1%} of new "
            f"inliers, but {n} calibration score(s) can reject no fewer than 1/({n} + 1) = "
            f"{1 / (n + 1):.1%}. Give at least {needed} calibration rows (more inlier rows"
            + (", or a larger validation_fraction" if hasattr(self, "validation_fraction") else "")
            + "), or raise contamination."
        )

    def _checked_offset(self) -> float:
        """``offset_``, once the scoring parameters are checked to be those it was set with.

        A changed one would compare scores of one kind with a threshold of another: every
        ``predict`` would be wrong without an error. Call it before scoring, so that the
        refusal comes before any work (and before a score that cannot be computed any more).
        """
        check_is_fitted(self)
        # Models fitted before the check existed carry no record and are trusted as they are.
        recorded = getattr(self, "_calibrated_with_", {})
        changed = {k: v for k, v in recorded.items() if not _same_value(getattr(self, k), v)}
        if changed:
            now = ", ".join(f"{k}={getattr(self, k)!r}" for k in changed)
            then = ", ".join(f"{k}={v!r}" for k, v in changed.items())
            raise ValueError(
                f"{type(self).__name__}: offset_ was set from scores with {then}, but the "
                f"estimator now has {now}. score_samples follows the new setting; thresholding "
                "needs an offset_ for it, so fit again (or set the parameter back)."
            )
        return self.offset_

    def _at_or_above_offset(self, scores: np.ndarray, offset: float) -> np.ndarray:
        """Whether each score is at or above ``offset``: not flagged by the threshold.

        A score just below ``offset`` is not flagged when it ties (:func:`is_at_or_above`) with
        the calibration score at which the threshold is reached, the smallest one at or above
        ``offset``: it is that row, or one identical to it, scored in a batch of another size
        (a tie is counted as conformal p-values count it). Ties are with that calibration
        score, not with ``offset`` itself: an ``offset`` interpolated between two close
        calibration scores still flags the lower one, as the quantile rule says.
        """
        scores = np.asarray(scores, dtype=np.float64)
        calibration = getattr(self, "calibration_scores_", np.empty(0))  # sorted
        reached = calibration[np.searchsorted(calibration, offset) :][:1]
        if reached.size == 0:  # a natural boundary above every calibration score
            return scores >= offset
        return (scores >= offset) | is_at_or_above(scores, reached[0])

    #: Parameters renamed since skood 0.1 (old -> new), so that a model pickled by 0.1 loads.
    _renamed_parameters: dict = {}

    def __setstate__(self, state: dict) -> None:
        # A model saved by an older skood (0.1, or before a parameter was added): its renamed
        # parameters take their new names; parameters it cannot map (added since, or renamed with
        # another meaning, docs/names.md) take their defaults, which leaves the fitted model as it
        # was but not its settings for a refit.
        for old, new in self._renamed_parameters.items():
            if old in state and new not in state:
                state[new] = state.pop(old)
        signature = inspect.signature(type(self).__init__).parameters
        defaulted = sorted(set(self._get_param_names()) - set(state))
        if defaulted:
            state.update({name: signature[name].default for name in defaulted})
            warn_user(
                f"This {type(self).__name__} was saved by an older skood: parameter(s) {defaulted} "
                "were renamed or added since (docs/names.md) and take their defaults. Its fitted "
                "model is unchanged; check get_params() before refitting or cloning it."
            )
        super().__setstate__(state)


def _same_value(now, then) -> bool:
    """Whether a parameter still holds the value it was recorded with.

    Arrays compare by their elements; any other value by ``==`` (objects without their own
    ``__eq__``, such as a callable, by identity), and a value ``==`` cannot decide is changed.
    """
    if now is then:
        return True
    try:
        if isinstance(now, np.ndarray) or isinstance(then, np.ndarray):
            return bool(np.array_equal(now, then))
        return bool(now == then)
    except (TypeError, ValueError):
        return False


class BaseDetector(CalibratedThresholdMixin, OutlierMixin, BaseEstimator):
    """Base class of skood's outlier detectors.

    Subclasses implement ``fit`` (ending with :meth:`_set_offset`) and ``score_samples``; this
    class supplies ``decision_function``, ``predict`` (via ``OutlierMixin.fit_predict`` too) and
    input validation.
    """

    _parameter_constraints: dict = {"contamination": CONTAMINATION_CONSTRAINT}

    # -- validation ----------------------------------------------------------------------------
    def _validate_X(self, X, *, reset: bool, dtype=(np.float64, np.float32), min_features: int = 1):
        """Validate ``X`` through sklearn: dense, numeric, finite, 2-D, right width."""
        return validate_numeric(
            self,
            X,
            reset=reset,
            dtype=list(dtype) if isinstance(dtype, tuple) else dtype,
            accept_sparse=False,
            ensure_all_finite=True,
            ensure_min_samples=2 if reset else 1,
            ensure_min_features=min_features,
        )

    def _validate_fit_data(self, X, y, **kwargs):
        """Validate ``X`` (resetting ``n_features_in_``) and split ``y`` by the -1 convention.

        Returns ``(X, inlier_mask, inlier_labels)``.
        """
        X = self._validate_X(X, reset=True, **kwargs)
        inlier_mask, labels = split_labels(y, X.shape[0], type(self).__name__)
        return X, inlier_mask, labels

    def decision_function(self, X) -> np.ndarray:
        """Shifted score: negative for outliers, non-negative for inliers.

        ``decision_function(X) = score_samples(X) - offset_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples,)
        """
        offset = self._checked_offset()
        return self.score_samples(X) - offset

    def predict(self, X) -> np.ndarray:
        """+1 for inliers and -1 for outliers, whose score is below ``offset_``.

        A score below ``offset_`` that ties, within :data:`TIE_RTOL` (relative), with the
        calibration score at which the threshold is reached counts as at the threshold, an
        inlier: the same row scores that little apart in batches of different sizes. So where
        ``decision_function`` is negative by no more than that rounding, ``predict`` may still
        say +1.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of int, shape (n_samples,)
        """
        offset = self._checked_offset()
        return np.where(self._at_or_above_offset(self.score_samples(X), offset), 1, -1)

    def score(self, X, y=None) -> float:
        """Mean of :meth:`score_samples` over ``X``: the mean log-likelihood for density models.

        It is ``GridSearchCV``'s criterion when no ``scoring`` is given. Held-out likelihood
        needs no outliers but favours plain maximum likelihood by construction; to tune for
        detection, score folds that hold outliers with :mod:`skood.metrics` scorers.
        """
        return float(np.mean(self.score_samples(X)))

    def _check_fitted_and_validate(self, X, **kwargs):
        check_is_fitted(self)
        return self._validate_X(X, reset=False, **kwargs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.requires_fit = True
        return tags


def check_class_labels(y, n_samples: int, estimator_name: str):
    """Class labels for an estimator that trains a classifier on the inlier rows.

    ``y`` is required; ``-1`` rows are outliers (never a class), and the inlier rows must hold at
    least 2 classes. Returns ``(inlier_mask, class codes of the inlier rows, classes)``, the
    codes being ``0 .. n_classes - 1`` in the order of ``classes``.
    """
    if y is None:
        raise ValueError(
            f"{estimator_name} requires y to be passed, but the target y is None: it trains a "
            f"classifier on the inlier class labels (rows labelled {OUTLIER_LABEL} are outliers)."
        )
    inliers, labels = split_labels(y, n_samples, estimator_name)  # names a NaN label's row
    labels = check_array(labels, ensure_2d=False, dtype=None, input_name="y")  # refuses inf
    check_classification_targets(labels)
    encoder = LabelEncoder().fit(labels)
    if encoder.classes_.size < 2:
        hint = ""
        if (~inliers).any():
            hint = (
                f" The {int((~inliers).sum())} rows labelled {OUTLIER_LABEL} are outliers in "
                f"skood's convention, not a class; if {OUTLIER_LABEL} is one of your classes, "
                f"relabel it (e.g. LabelEncoder) and mark outliers with {OUTLIER_LABEL}."
            )
        raise ValueError(
            f"{estimator_name} needs at least 2 inlier classes in y to train a classifier; got "
            f"{encoder.classes_.size} class ({list(encoder.classes_)}).{hint}"
        )
    return inliers, encoder.transform(labels).astype(np.int64), encoder.classes_


class LogitClassifierMixin(CalibratedThresholdMixin):
    """What a classifier with an out-of-distribution gate shares (``OpenSetClassifier``, ICE).

    The class defines ``_logits(X)`` and ``_scores_and_logits(X)`` on validated ``X`` (float64
    logits of shape ``(n_samples, n_classes)``, columns as ``classes_``, and the gate's score,
    higher = more in-distribution) and sets ``offset_`` with :meth:`_set_offset`; this mixin
    derives sklearn's classifier outputs from the logits and the open-set outputs from the score.
    ``contamination`` is the share of calibration inliers the gate rejects (0.05 is the usual
    TPR-95 operating point: 95 % of inliers accepted).
    """

    def _validate(self, X) -> np.ndarray:
        check_is_fitted(self)
        return validate_numeric(self, X, dtype=np.float32, reset=False)

    def score_samples(self, X) -> np.ndarray:
        """The gate's score: higher = more like the inlier classes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples,)
        """
        return self._scores_and_logits(self._validate(X))[0]

    def decision_function(self, X) -> np.ndarray:
        """The logits, as sklearn's classifier contract defines ``decision_function``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples, n_classes), or (n_samples,) for two classes
            For two classes, the logit difference (positive means ``classes_[1]``).
        """
        logits = self._logits(self._validate(X))
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, the softmax of the logits; columns as ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples, n_classes)
        """
        return softmax(self._logits(self._validate(X)), axis=1)

    def predict_log_proba(self, X) -> np.ndarray:
        """Log of :meth:`predict_proba`, computed stably from the logits."""
        logits = self._logits(self._validate(X))
        return logits - logsumexp(logits, axis=1, keepdims=True)

    def predict_closed_set(self, X) -> np.ndarray:
        """The class with the largest logit for every input, never rejecting.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        logits = self._logits(self._validate(X))  # raises NotFittedError first when unfitted
        return self.classes_[np.argmax(logits, axis=1)]

    def predict_open_set(self, X) -> np.ndarray:
        """The class for accepted inputs, ``-1`` for inputs whose score is below ``offset_``.

        A score that ties with the calibration score at which the threshold is reached (within
        :data:`TIE_RTOL`) is accepted, as in :meth:`BaseDetector.predict`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
            Values from ``classes_``, or ``-1`` (``"-1"`` for string classes).
        """
        offset = self._checked_offset()
        scores, logits = self._scores_and_logits(self._validate(X))
        return open_set_labels(
            self.classes_, np.argmax(logits, axis=1), ~self._at_or_above_offset(scores, offset)
        )

    def outlier_decision_function(self, X) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for inputs the gate rejects.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples,)
        """
        offset = self._checked_offset()
        return self.score_samples(X) - offset

    def predict_outlier(self, X) -> np.ndarray:
        """The gate alone: +1 for accepted (in-distribution) inputs, -1 for rejected ones.

        A score that ties with the calibration score at which the threshold is reached (within
        :data:`TIE_RTOL`) is accepted, as in :meth:`BaseDetector.predict`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of int, shape (n_samples,)
        """
        offset = self._checked_offset()
        return np.where(self._at_or_above_offset(self.score_samples(X), offset), 1, -1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.target_tags.required = True
        return tags
