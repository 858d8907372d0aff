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
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from numbers import Integral, Real

import joblib
import numpy as np
from scipy.special import logsumexp, softmax
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.exceptions import NotFittedError
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

from skood._compat import upgrade_state

__all__ = [
    "AUTO_CONTAMINATION",
    "CONSTANT_RTOL",
    "CONTAMINATION_CONSTRAINT",
    "FRACTION_CONSTRAINT",
    "GATE_CONTAMINATION_CONSTRAINT",
    "OUTLIER_LABEL",
    "SCORE_FLOOR",
    "TIE_RTOL",
    "TIE_RTOL_FLOAT64",
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
    "tie_rtol",
    "validate_numeric",
    "warn_if_anomaly_labels",
    "warn_user",
]

#: The label that marks an outlier row in ``y`` (auxiliary / outlier-exposure data, or a known
#: anomaly in a validation fold). Every other value is an inlier label.
OUTLIER_LABEL = -1

#: Scores are floored here instead of being ``-inf`` or ``NaN`` (a far outlier can overflow a
#: float32 log-likelihood). It ranks below every real score, and is small enough in magnitude that
#: ``score - offset_`` and a mean over up to ~1e200 rows stay finite.
SCORE_FLOOR = -1e100

#: Scores within this relative distance of each other are ties, for scores computed in float32
#: (every torch model). A float32 network scores the same row about 1e-7 apart (relative) in
#: batches of different sizes, as BLAS kernels sum in another order; measured up to 4e-7 for
#: Deep SVDD on a constant training set (its held-out calibration rows, scored as a batch of 2,
#: landed above the same rows scored as a batch of 20, and every training row was flagged). That
#: rounding must not decide a row's side of a threshold, nor move its conformal p-value.
TIE_RTOL = 1e-6

#: The same for scores computed in float64 (the Gaussian, scikit-learn's detectors): their
#: batch-to-batch rounding was measured at most 8e-16 relative (Mahalanobis scores of digits in
#: batches of 1, 2, 7 and 64 rows), so 1e-12 (about 4,500 units in the last place) absorbs
#: rounding with a wide margin and nothing more: integers stay distinct up to 1e12. A float32
#: tolerance on such scores made 1e7 + small integers all ties: p-values rose by up to 0.26 and
#: Benjamini-Hochberg flagged nothing.
TIE_RTOL_FLOAT64 = 1e-12


def tie_rtol(dtype) -> float:
    """The tie tolerance of scores computed in ``dtype``: :data:`TIE_RTOL_FLOAT64` for float64
    (or wider), :data:`TIE_RTOL` for anything coarser (float32, float16, integers read as
    float32 by a network)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize >= 8:
        return TIE_RTOL_FLOAT64
    return TIE_RTOL


def tie_ceiling(scores, rtol: float = TIE_RTOL) -> np.ndarray:
    """The largest value each score ties with: ``s + rtol |s|``, as float64.

    The one place the tie rule is written: :func:`is_at_or_above` (thresholds) and
    :mod:`skood.conformal` (p-values, counting the calibration scores ``<=`` a score) use it.
    ``rtol`` follows the precision the scores were computed in (:func:`tie_rtol`).
    """
    scores = np.asarray(scores, dtype=np.float64)
    return scores + rtol * np.abs(scores)


def is_at_or_above(scores, reference: float, rtol: float = TIE_RTOL) -> np.ndarray:
    """Whether each score is at or above ``reference``, ties within ``rtol`` included.

    A score below ``reference`` by at most ``rtol`` times its own magnitude is a tie and
    counts as at it: how :mod:`skood.conformal` counts the calibration scores ``<=`` a score.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
    reference : float
    rtol : float, default=TIE_RTOL
        :func:`tie_rtol` of the dtype the scores were computed in.

    Returns
    -------
    ndarray of bool, shape (n_samples,)

    Examples
    --------
    >>> is_at_or_above([-2.0, -1.0000001, -1.1], -1.0)
    array([False,  True, False])
    """
    return tie_ceiling(scores, rtol) >= reference


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


#: Frames in these folders are skood's, scikit-learn's or joblib's (which runs an ensemble's or
#: a search's fits), never the user's code.
_INTERNAL_DIRS = tuple(
    os.path.dirname(os.path.abspath(module.__file__)) + os.sep
    for module in (sys.modules[__name__.split(".")[0]], sys.modules["sklearn"], joblib)
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


def warn_if_anomaly_labels(y) -> None:
    """Warn when ``y`` holds exactly the values 0 and 1: almost always anomaly labels.

    ADBench, PyOD and most anomaly data sets mark an anomaly with 1 and a normal row with 0. In
    skood's convention that ``y`` has no outlier (only ``-1`` is one): its anomalies become a
    second inlier class, which a class-aware detector even models (breast cancer: AUROC 0.966 ->
    0.831). One message for every estimator, so that an ensemble and its members say it once.
    """
    try:
        values = np.unique(np.asarray(y))
    except TypeError:  # labels of mixed types (1 and "a") do not sort: not 0 / 1 labels either
        return
    if values.dtype.kind in "OUS":
        is_01 = {str(v).strip() for v in values.tolist()} == {"0", "1"}
    else:
        is_01 = values.dtype.kind in "biuf" and set(values.tolist()) == {0, 1}
    if is_01:
        warn_user(
            f"y holds only the values 0 and 1 and no {OUTLIER_LABEL}: skood reads every row as an "
            f"inlier (only {OUTLIER_LABEL} marks an outlier), so 0 and 1 are two inlier classes. "
            "If 1 marks an anomaly (the ADBench / PyOD convention), pass "
            "skood.datasets.from_anomaly_labels(y), which maps 1 to -1 and 0 to +1; if they are "
            "two classes of normal rows, name them otherwise (e.g. 1 and 2) to silence this."
        )


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


def _rows(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``a[rows]``, or ``a`` itself (no copy) when ``rows`` is every row in order."""
    if rows.size == len(a) and (rows.size == 0 or (rows[0] == 0 and rows[-1] == rows.size - 1)):
        return a  # sorted, unique indices covering every row: all of them, in order
    return a[rows]


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

#: The constraint of a share of rows held out (``validation_fraction``): in [0, 1).
FRACTION_CONSTRAINT = [Interval(Real, 0, 1, closed="left")]

#: A classifier's gate (ICE, OpenSetClassifier) may reject any share of calibration inliers,
#: including none (0: the lowest calibration score is the threshold).
GATE_CONTAMINATION_CONSTRAINT = [Interval(Real, 0, 1, closed="left"), StrOptions({"auto"})]


class CalibratedThresholdMixin:
    """The fit template and how every skood estimator turns its scores into ``offset_``.

    :meth:`fit` is written once, here, the way scikit-learn's ``IsolationForest`` sets its
    offset from its own ``_score_samples``::

        X, y = self._validate_training_data(X, y)          # sklearn validation, -1 labels
        train, calibration = self._calibration_split(...)  # rows held out by validation_fraction
        self._fit_model(X[train], y[train], rng, X[calibration])  # the method's own training
        self._set_offset(self._calibration_scores(X[calibration]), held_out=...)

    A method writes :meth:`_fit_model` and :meth:`_score_samples` (on validated rows; ``NaN``
    and ``-inf`` are floored by :func:`finite_scores` afterwards) and, where it differs from the
    default, one of the hooks below. Class attributes say what the template needs to know:
    the dtype the model reads, whether rows labelled ``-1`` train it (outlier exposure), whether
    calibration rows are drawn per class.

    A class whose score has a natural boundary sets ``_natural_offset`` (the score value at that
    boundary); ``contamination="auto"`` then uses it and the method needs no held-out rows
    (:meth:`_calibration_fraction` is 0).
    """

    #: The dtype(s) ``fit`` and ``score_samples`` convert ``X`` to (torch models read float32).
    _input_dtype: type | tuple = (np.float64, np.float32)
    #: The precision the score is computed in, which sets how close two scores must be to tie
    #: (:func:`tie_rtol`): float32 unless the class computes in float64 throughout.
    _score_dtype: type = np.float32
    #: The fewest columns ``X`` may have.
    _min_features: int = 1
    #: The fewest inlier rows left to train on once calibration rows are held out.
    _min_train_rows: int = 2
    #: Whether rows labelled ``-1`` reach :meth:`_fit_model` (outlier exposure). Otherwise they
    #: are dropped right after validation, and ``y`` holds inlier labels only.
    _trains_on_outliers: bool = False
    #: Whether calibration rows are held out per class (``y``'s inlier labels), so that a
    #: classifier trained on the rest still sees every class.
    _stratified_calibration: bool = False
    #: sklearn's parameter validation at ``fit``: none unless the class declares some.
    _parameter_constraints: dict = {}

    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the detector on ``X`` and set ``offset_`` from its calibration rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : array-like of shape (n_samples,), default=None
            ``-1`` marks an outlier row: left out, or used as outlier exposure by the methods
            that learn from outliers. Any other value is an inlier label (a class, or +1),
            which class-aware methods read and the others ignore.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X, y = self._validate_training_data(X, y)
        rng = check_random_state(getattr(self, "random_state", None))
        train, calibration = self._calibration_split(X, y, rng)
        X_train, y_train = _rows(X, train), None if y is None else _rows(y, train)
        self._fit_model(X_train, y_train, rng, X[calibration])
        held_out = calibration.size > 0
        if not held_out:  # nothing held out: the inlier rows the model was fitted on
            calibration = train if y is None else train[~is_outlier_label(y[train])]
        scores = finite_scores(self._calibration_scores(_rows(X, calibration)))
        self._set_offset(scores, held_out=self._calibration_held_out(held_out))
        return self

    # -- the steps of fit, overridden where a method differs -----------------------------------
    def _validate_training_data(self, X, y):
        """``(X, y)`` validated: ``X`` as ``_input_dtype`` (``n_features_in_`` reset), ``y``
        as a 1-D array or None, rows labelled ``-1`` dropped unless ``_trains_on_outliers``."""
        X = self._validate_X(
            X, reset=True, dtype=self._input_dtype, min_features=self._min_features
        )
        inliers, _ = split_labels(y, X.shape[0], type(self).__name__)
        if y is None:
            return X, None
        y = column_or_1d(y)
        if inliers.all():
            warn_if_anomaly_labels(y)
        elif not self._trains_on_outliers:
            X, y = X[inliers], y[inliers]
        return X, y

    def _calibration_split(self, X, y, rng) -> tuple[np.ndarray, np.ndarray]:
        """``(train rows, calibration rows)``: the inlier rows ``validation_fraction`` holds out.

        Rows labelled ``-1`` always train. An estimator without ``validation_fraction`` holds
        nothing out (no random draw either); an empty calibration set means "calibrate on the
        inlier training rows".
        """
        n = X.shape[0]
        if not hasattr(self, "validation_fraction"):
            return np.arange(n), np.empty(0, dtype=np.intp)
        outlier = np.zeros(n, dtype=bool) if y is None else is_outlier_label(y)
        inlier_rows = np.flatnonzero(~outlier)
        stratify = y[inlier_rows] if self._stratified_calibration and y is not None else None
        fit_rows, held = split_holdout(
            inlier_rows.size,
            self._calibration_fraction(self.validation_fraction),
            rng,
            min_train=self._min_train_rows,
            estimator_name=type(self).__name__,
            stratify=stratify,
        )
        train = inlier_rows[fit_rows]
        if outlier.any():
            train = np.sort(np.concatenate([train, np.flatnonzero(outlier)]))
        return train, inlier_rows[held]

    def _fit_model(self, X, y, rng, X_calibration) -> None:
        """Fit the method's model on the training rows (``y``: their labels, or None).

        ``rng`` is the ``RandomState`` of ``random_state`` after the calibration split drew
        from it: a method draws its seeds from it, so one ``random_state`` fixes everything.
        ``X_calibration`` holds the inlier rows held out to calibrate ``offset_`` (possibly
        none): they must not train the model; a torch method reports a validation loss on them
        for the user's callbacks (e.g. early stopping).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement _fit_model")

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        """The score of validated rows, higher = more normal (floored to finite by callers)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _score_samples")

    def _calibration_scores(self, X: np.ndarray) -> np.ndarray:
        """The scores ``offset_`` is set from: by default :meth:`_score_samples` of the rows.

        A method that fits something on these rows (a score's mean and spread) fits it here,
        and says so through :meth:`_calibration_held_out`.
        """
        return self._score_samples(X)

    def _calibration_held_out(self, rows_held_out: bool) -> bool:
        """Whether the calibration scores are exchangeable with new inliers' scores.

        By default, when the rows were held out of training. A method that fits nothing to its
        rows says True; one that fits statistics of its score on them says False.
        """
        return rows_held_out

    # -- scoring -------------------------------------------------------------------------------
    def score_samples(self, X) -> np.ndarray:
        """The score of each row: higher = more normal (for a classifier's gate: more like the
        inlier classes).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples,)
            Finite: NaN and -inf are floored at :data:`SCORE_FLOOR`.
        """
        return finite_scores(self._score_samples(self._check_fitted_and_validate(X)))

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

    def _check_fitted_and_validate(self, X, **kwargs):
        """Raise ``NotFittedError`` unless fitted, then validate ``X`` for scoring."""
        check_is_fitted(self)
        kwargs.setdefault("dtype", self._input_dtype)
        return self._validate_X(X, reset=False, **kwargs)

    def _predict_from_scores(self, scores: np.ndarray, offset: float) -> np.ndarray:
        """+1 where a score is at or above ``offset`` (ties included, see below), else -1."""
        return np.where(self._at_or_above_offset(scores, offset), 1, -1)

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

    def calibrate_offset(self, calibration_scores, *, held_out: bool):
        """Set ``offset_`` (and ``calibration_scores_``) from scores of inlier rows.

        ``fit`` calls this itself. Call it to threshold a fitted model on scores computed
        elsewhere: a Dask fit scores its training blocks on the cluster, or new inlier rows
        recalibrate a model without training it again.

        Parameters
        ----------
        calibration_scores : array-like of shape (n_samples,)
            ``score_samples`` of inlier rows (finite; NaN and -inf count as the score floor).
        held_out : bool
            Whether the fitted score never depended on those rows (True for new rows): only
            then can :class:`skood.conformal.ConformalDetector` reuse them for p-values.

        Returns
        -------
        self : object
        """
        check_is_fitted(self)
        scores = finite_scores(column_or_1d(np.asarray(calibration_scores, dtype=np.float64)))
        self._set_offset(scores, held_out=held_out)
        return self

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
        if not hasattr(self, "offset_"):  # a model set from parts (e.g. fit_moments)
            raise NotFittedError(
                f"This {type(self).__name__} has a fitted model but no offset_ yet: call "
                "calibrate_offset with the scores of inlier rows (or fit) before thresholding."
            )
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
        return (scores >= offset) | is_at_or_above(scores, reached[0], tie_rtol(self._score_dtype))

    def __setstate__(self, state: dict) -> None:
        # A model saved by an older skood: skood._compat maps its names to today's.
        super().__setstate__(upgrade_state(self, state, warn_user))


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

    Subclasses implement ``_fit_model`` and ``_score_samples`` (the fit template is
    :meth:`CalibratedThresholdMixin.fit`); this class supplies ``score_samples``,
    ``decision_function``, ``predict`` (via ``OutlierMixin.fit_predict`` too) and input
    validation.
    """

    _parameter_constraints: dict = {"contamination": CONTAMINATION_CONSTRAINT}

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
        return self._predict_from_scores(self.score_samples(X), offset)

    def score(self, X, y=None) -> float:
        """Mean of :meth:`score_samples` over ``X``: the mean log-likelihood for density models.

        It is ``GridSearchCV``'s criterion when no ``scoring`` is given. Held-out likelihood
        needs no outliers but favours plain maximum likelihood by construction; to tune for
        detection, score folds that hold outliers with :mod:`skood.metrics` scorers.
        """
        return float(np.mean(self.score_samples(X)))

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

    The class defines ``_logits(X)`` and ``_score_samples(X, return_logits=False)`` on
    validated ``X`` (float64 logits of shape ``(n_samples, n_classes)``, columns as
    ``classes_``; the gate's score, higher = more in-distribution, with the logits of the same
    forward pass when asked) and fits through the template :meth:`CalibratedThresholdMixin.fit`
    (calibration rows held out per class); this mixin derives sklearn's classifier outputs from
    the logits and the open-set outputs from the score.
    ``contamination`` is the share of calibration inliers the gate rejects (0.05 is the usual
    TPR-95 operating point: 95 % of inliers accepted).
    """

    _input_dtype = np.float32
    _stratified_calibration = True
    _trains_on_outliers = True

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
        logits = self._logits(self._check_fitted_and_validate(X))
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
        return softmax(self._logits(self._check_fitted_and_validate(X)), axis=1)

    def predict_log_proba(self, X) -> np.ndarray:
        """Log of :meth:`predict_proba`, computed stably from the logits."""
        logits = self._logits(self._check_fitted_and_validate(X))
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
        logits = self._logits(
            self._check_fitted_and_validate(X)
        )  # raises NotFittedError first when unfitted
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
        scores, logits = self._score_samples(self._check_fitted_and_validate(X), return_logits=True)
        scores = finite_scores(scores)
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
        return self._predict_from_scores(self.score_samples(X), offset)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.target_tags.required = True
        return tags
