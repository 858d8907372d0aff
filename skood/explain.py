"""Why was this row flagged? Per-column contributions to a detector's score.

:func:`explain` returns, for each row, how much each input column moved the detector's score away
from the score of a *baseline* row (higher = more normal, so a column with a negative contribution
pushed its row towards "outlier"). Three methods, chosen per detector:

* **Exact Shapley values of a quadratic form** — :class:`~skood.GaussianMahalanobis`. Its score is
  ``-0.5 z^T A z`` plus a constant, with ``z = x - mu`` the row's offset from its (closest) class
  mean and ``A`` the precision matrix. With the baseline at ``mu``, the coalition game
  ``v(S) = -0.5 z_S^T A z_S`` has pairwise interactions only, each shared equally between its two
  columns, so column ``i``'s Shapley value is ``phi_i = -0.5 z_i (A z)_i``, and the values sum to
  ``score(x) - score(mu)`` exactly. Class-conditional (``aggregate="max"``): ``mu`` is the mean
  of the class the row scores best under, and the sum is the row's score minus that class's score
  at its mean.
* **Integrated gradients** (Sundararajan, Taly and Yan, ICML 2017) — every detector with a
  ``score_gradient`` method: the torch detectors (:class:`~skood.QuantileFlowDetector`,
  :class:`~skood.VAEDetector`, the HSC family, :class:`~skood.AMADetector`,
  :class:`~skood.ICEClassifier`: autograd through the network in eval mode),
  :class:`~skood.KNNDetector` and a Gaussian with ``aggregate="logsumexp"`` or a ``background``
  (closed forms): ``phi_i = (x_i - b_i) int_0^1 d score(b + t (x - b)) / d x_i dt`` from a
  baseline row ``b``, the integral by Gauss-Legendre quadrature (``n_steps`` nodes). The values
  sum to ``score(x) - score(b)`` up to the quadrature error (a network with ReLUs has a
  piecewise-constant gradient, which quadrature integrates less exactly than a smooth one),
  which :attr:`Explanation.completeness_error` reports per row. The baseline is the median of
  ``background``; without one, the nearest-neighbour detector's training rows' median, the
  Gaussian's mean; a torch detector keeps no rows, so it needs ``background``.
* **Permutation Shapley values** (Strumbelj and Kononenko 2014; antithetic permutations) — any
  other detector, as a black box: ``n_permutations`` random column orders per row, each column
  credited with the score change when it switches from the baseline's value to the row's. The
  values sum to ``score(x) - score(b)`` exactly (every permutation telescopes); their sampling
  error shrinks as ``1 / sqrt(n_permutations)``. Cost: ``n_permutations * (n_columns + 1)``
  scores per row.

Composites are explained through their parts: a ``Pipeline``'s steps map the detector's columns
back to the user's input columns (a scaler's column is its input column; a one-hot encoder's
columns are summed back to their source column); :class:`~skood.EnsembleDetector`
(``combine="zscore"``, a mean of standardised scores) adds its members' contributions with the same
weights; :class:`~skood.ConformalDetector` explains the score its p-value ranks (p-values are a
monotone step function of it, with no gradient).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

__all__ = ["BackgroundNeeded", "Explanation", "explain"]

#: Transformers whose output column ``j`` is a function of input column ``j`` only.
_COLUMNWISE = {
    "StandardScaler",
    "MinMaxScaler",
    "MaxAbsScaler",
    "RobustScaler",
    "QuantileTransformer",
    "PowerTransformer",
    "OrdinalEncoder",
    "Binarizer",
}


class BackgroundNeeded(ValueError):
    """The detector keeps no reference rows to take a baseline from: pass ``background=``."""


@dataclass
class Explanation:
    """Per-column contributions to the scores of some rows (see :func:`explain`).

    Attributes
    ----------
    values : ndarray of shape (n_rows, n_columns)
        Column ``j``'s contribution to row ``i``'s score, relative to the baseline: negative
        values pushed the row towards "outlier". Each row sums to ``scores - baseline_scores``
        (exactly for the exact and permutation methods, up to ``completeness_error`` for
        integrated gradients).
    feature_names : ndarray of str, shape (n_columns,)
        The input columns (a DataFrame's names, else ``x0``, ``x1``, ...).
    scores : ndarray of shape (n_rows,)
        The explained score of each row (the detector's ``score_samples``; for a
        ``ConformalDetector``, the score its p-value ranks).
    baseline_scores : ndarray of shape (n_rows,)
        The score the contributions start from (the baseline row's, per row where the baseline
        depends on the row, as the Gaussian's class mean does).
    completeness_error : ndarray of shape (n_rows,)
        ``|values.sum(1) - (scores - baseline_scores)|``: 0 up to rounding for the exact and
        permutation methods, the quadrature error for integrated gradients.
    method : str
        ``"exact"``, ``"integrated_gradients"``, ``"permutation"``, or several joined by ``+``
        (an ensemble's members).
    """

    values: np.ndarray
    feature_names: np.ndarray
    scores: np.ndarray
    baseline_scores: np.ndarray
    completeness_error: np.ndarray
    method: str

    def top(self, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` columns that pushed each row furthest towards "outlier", and their shares.

        Returns
        -------
        names : ndarray of str, shape (n_rows, k)
            Most negative contribution first.
        shares : ndarray of float, shape (n_rows, k)
            Each column's share of the row's total push towards "outlier" (the sum of its
            negative contributions), in [0, 1]; 0 where the column pushed the other way.
        """
        k = min(int(k), self.values.shape[1])
        order = np.argsort(self.values, axis=1, kind="stable")[:, :k]
        push = np.clip(-self.values, 0.0, None)
        total = push.sum(axis=1, keepdims=True)
        picked = np.take_along_axis(push, order, axis=1)
        shares = np.divide(picked, total, out=np.zeros_like(picked), where=total > 0)
        return self.feature_names[order], shares


# -- the public entry point -----------------------------------------------------------------------


def explain(
    model,
    X,
    *,
    background=None,
    n_steps: int = 32,
    n_permutations: int = 16,
    batch_size: int = 4096,
    random_state=None,
) -> Explanation:
    """Per-column contributions of ``X``'s columns to ``model``'s score of each row.

    Parameters
    ----------
    model : fitted detector
        A skood detector, a scikit-learn or PyOD detector, a ``Pipeline`` ending in one,
        :class:`~skood.EnsembleDetector` or :class:`~skood.ConformalDetector`.
    X : array-like or DataFrame of shape (n_rows, n_columns)
        The rows to explain, as ``model.score_samples`` takes them.
    background : array-like or None, default=None
        Normal rows (e.g. some training rows): the baseline is their column-wise median.
        None: the detector's own reference where it keeps one (the Gaussian's class means, the
        nearest-neighbour detector's training rows); a detector that keeps none (the torch
        detectors, any black box) needs it.
    n_steps : int, default=32
        Integrated gradients: the quadrature nodes on the path from the baseline.
    n_permutations : int, default=16
        Permutation Shapley values: the random column orders per row (an even number is
        used: antithetic pairs).
    batch_size : int, default=4096
        Rows (or path points) scored at a time: memory is bounded by it.
    random_state : int, RandomState or None, default=None
        The permutations.

    Returns
    -------
    Explanation

    Examples
    --------
    >>> import numpy as np
    >>> from skood import GaussianMahalanobis
    >>> from skood.explain import explain
    >>> rng = np.random.default_rng(0)
    >>> det = GaussianMahalanobis().fit(rng.normal(size=(500, 3)))
    >>> row = np.array([[0.1, 6.0, -0.2]])  # far out in column 1
    >>> e = explain(det, row)
    >>> e.top(1)[0][0, 0], bool(np.isclose(e.values.sum(), (e.scores - e.baseline_scores)[0]))
    (np.str_('x1'), True)
    """
    check_is_fitted(model)
    fitted = getattr(model, "feature_names_in_", None)
    given = getattr(X, "columns", None)
    if fitted is not None and given is not None and [str(c) for c in given] != list(fitted):
        # The contributions are computed on arrays: columns in another order would be read as
        # the fitted ones, silently. scikit-learn refuses that too.
        raise ValueError(
            f"explain: X has the columns {[str(c) for c in given][:8]}, but "
            f"{type(model).__name__} was fitted on {list(fitted)[:8]}, in that order; pass "
            "X[model.feature_names_in_]."
        )
    names = _feature_names(model, X)
    rng = check_random_state(random_state)
    options = {
        "n_steps": int(n_steps),
        "n_permutations": max(2, int(n_permutations) + int(n_permutations) % 2),
        "batch_size": int(batch_size),
        "rng": rng,
    }
    with warnings.catch_warnings():
        # A detector fitted on a DataFrame is scored on arrays of the same columns (checked
        # above): scikit-learn's warning that they carry no names says nothing here.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        values, scores, base, method = _explain(model, X, background, options)
    values = np.asarray(values, dtype=np.float64)
    error = np.abs(values.sum(axis=1) - (scores - base))
    return Explanation(values, names, scores, base, error, method)


# -- dispatch -------------------------------------------------------------------------------------


def _explain(model, X, background, options):
    """``(values, scores, baseline_scores, method)`` with ``values`` on ``X``'s columns."""
    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import Pipeline

    from skood.conformal import ConformalDetector
    from skood.ensemble import EnsembleDetector
    from skood.gaussian import GaussianMahalanobis

    if isinstance(model, FrozenEstimator):
        return _explain(model.estimator, X, background, options)
    if isinstance(model, Pipeline):
        return _explain_pipeline(model, X, background, options)
    if isinstance(model, ConformalDetector):
        fitted = model.estimators_ if model.method == "cross" else [model.estimator_]
        parts = [_explain(m, X, background, options) for m in fitted]
        return _weighted_sum(parts, np.full(len(parts), 1.0 / len(parts)), 0.0)
    Z = _as_float_array(X)
    if isinstance(model, GaussianMahalanobis):
        return _explain_gaussian(model, Z, background, options)
    if isinstance(model, EnsembleDetector) and model.combine == "zscore":
        parts = [_explain(m, Z, background, options) for m in model.estimators_]
        weights = 1.0 / (len(parts) * np.asarray(model.scale_, dtype=np.float64))
        offset = -float(np.sum(weights * np.asarray(model.location_, dtype=np.float64)))
        return _weighted_sum(parts, weights, offset)
    if hasattr(model, "score_gradient"):
        return _explain_gradient(model, Z, background, options)
    return _explain_permutation(model, Z, background, options)


def _weighted_sum(parts, weights, offset):
    """Contributions of ``sum_m weights_m * score_m + offset``, from the parts'."""
    values = sum(w * p[0] for w, p in zip(weights, parts))
    scores = sum(w * p[1] for w, p in zip(weights, parts)) + offset
    base = sum(w * p[2] for w, p in zip(weights, parts)) + offset
    method = "+".join(dict.fromkeys(p[3] for p in parts))
    return values, scores, base, method


# -- Pipelines: the detector's columns back to the input columns ----------------------------------


class _Unmapped(Exception):
    """A step whose output columns cannot be traced back to single input columns."""


def _explain_pipeline(pipe, X, background, options):
    head, last = pipe[:-1], pipe[-1]
    n_in = _n_columns(X)
    try:
        sources = _column_sources(head, np.arange(n_in))
    except _Unmapped as step:  # a PCA, say: the Pipeline is a black box on the input columns
        try:
            Z = _as_float_array(X)
        except (TypeError, ValueError):
            raise ValueError(
                f"explain: the Pipeline's step {step} mixes its input columns, so its "
                "contributions cannot be folded back onto them, and its input is not all "
                "numeric, so the Pipeline cannot be explained as a black box either."
            ) from None
        return _explain_permutation(pipe, Z, background, options)
    Z = head.transform(X)
    Z_background = None if background is None else head.transform(background)
    values, scores, base, method = _explain(last, Z, Z_background, options)
    folded = np.zeros((values.shape[0], n_in))
    for j, source in enumerate(sources):  # a one-hot block sums back to its source column
        folded[:, source] += values[:, j]
    return folded, scores, base, method


def _column_sources(step, sources: np.ndarray) -> np.ndarray:
    """For each output column of the fitted ``step``, the input column it comes from."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    if step is None or (isinstance(step, str) and step == "passthrough"):
        return sources
    if isinstance(step, Pipeline):
        for _, inner in step.steps:
            sources = _column_sources(inner, sources)
        return sources
    if isinstance(step, ColumnTransformer):
        out = []
        for name, inner, columns in step.transformers_:
            if isinstance(inner, str) and inner == "drop":
                continue
            picked = _column_positions(step, columns, sources.size)
            if picked.size == 0:  # sklearn leaves a transformer of no column unfitted
                continue
            mapped = _column_sources(inner, sources[picked])
            width = step.output_indices_[name]
            if mapped.size != width.stop - width.start:
                raise _Unmapped(name)
            out.append(mapped)
        return np.concatenate(out) if out else np.zeros(0, dtype=int)
    if isinstance(step, OneHotEncoder):
        return np.repeat(sources, _one_hot_widths(step))
    encoder = getattr(step, "encoder_", None)  # skood.preprocessing.KnownCategories
    if encoder is not None:
        return _column_sources(encoder, sources)
    if hasattr(step, "get_support"):
        return sources[step.get_support()]
    support = getattr(step, "support_", None)  # skood.registry.InformativeColumns
    if support is not None:
        return sources[np.asarray(support)]
    if type(step).__name__ in _COLUMNWISE:
        return sources
    raise _Unmapped(type(step).__name__)


def _column_positions(column_transformer, columns, n: int) -> np.ndarray:
    """Positions of a ColumnTransformer entry's columns among its ``n`` input columns."""
    positions = np.arange(n)
    if isinstance(columns, slice) or np.isscalar(columns):
        return np.atleast_1d(positions[columns])
    columns = np.asarray(columns)
    if columns.dtype == bool:
        return positions[columns]
    if columns.dtype.kind in "iu":
        return positions[columns]
    names = list(column_transformer.feature_names_in_)
    return np.array([names.index(c) for c in columns], dtype=int)


def _one_hot_widths(encoder) -> list[int]:
    """The number of output columns of each input column of a fitted ``OneHotEncoder``."""
    widths = []
    drop = getattr(encoder, "drop_idx_", None)
    rare = getattr(encoder, "infrequent_categories_", None) or [None] * len(encoder.categories_)
    for i, categories in enumerate(encoder.categories_):
        width = len(categories)
        if rare[i] is not None and len(rare[i]) > 0:  # the rare ones share one column
            width -= len(rare[i]) - 1
        if drop is not None and drop[i] is not None:
            width -= 1
        widths.append(width)
    return widths


# -- exact: the Gaussian's quadratic form ---------------------------------------------------------


def _explain_gaussian(det, Z, background, options):
    W = np.asarray(det.whitening_, dtype=np.float64)
    means = np.asarray(det.means_, dtype=np.float64)
    scores = det.score_samples(Z)
    if background is not None or (det.aggregate == "logsumexp" and means.shape[0] > 1):
        # Not a single quadratic form (a mixture), or a baseline of the user's: integrated
        # gradients of the log-density, whose gradient is known in closed form.
        baseline = _baseline(background, default=means.mean(axis=0))
        return _integrated_gradients(det, Z, baseline, det.score_gradient, options)
    values = np.empty_like(Z)
    base = np.empty(Z.shape[0])
    n_features = Z.shape[1]
    constant = -0.5 * (float(det.log_det_) + n_features * np.log(2.0 * np.pi))
    for sl in _slices(Z.shape[0], options["batch_size"]):
        z_all = Z[sl, None, :] - means[None, :, :]  # (rows, classes, features)
        zw = z_all @ W
        best = np.argmax(-0.5 * np.einsum("rcf,rcf->rc", zw, zw), axis=1)
        z = z_all[np.arange(z_all.shape[0]), best]
        Az = (z @ W) @ W.T  # A = W W^T, the precision matrix
        values[sl] = -0.5 * z * Az
        base[sl] = constant
    return values, scores, base, "exact"


# -- integrated gradients -------------------------------------------------------------------------


def _explain_gradient(det, Z, background, options):
    """Integrated gradients of a detector's ``score_gradient`` from the median of ``background``
    (or, for the nearest-neighbour detector, of its reference rows)."""
    reference = getattr(det, "reference_", None)  # KNNDetector's training rows
    if background is None and reference is None:
        raise BackgroundNeeded(
            f"explain: {type(det).__name__} keeps no reference rows to take a baseline from; "
            "pass background= some normal rows (e.g. a sample of the training rows): the "
            "integrated gradients start from their column-wise median."
        )
    default = None if reference is None else np.median(np.asarray(reference), axis=0)
    baseline = _baseline(background, default=default)
    return _integrated_gradients(det, Z, baseline, det.score_gradient, options)


def _integrated_gradients(det, Z, baseline, gradient, options):
    """``(x - b) * int_0^1 grad(b + t (x - b)) dt`` by Gauss-Legendre quadrature."""
    nodes, weights = np.polynomial.legendre.leggauss(options["n_steps"])
    nodes, weights = (nodes + 1.0) / 2.0, weights / 2.0  # on [0, 1]
    scores = np.asarray(det.score_samples(Z), dtype=np.float64)
    base_score = float(np.asarray(det.score_samples(baseline[None, :]), dtype=np.float64)[0])
    values = np.empty_like(Z)
    rows_per_batch = max(1, options["batch_size"] // len(nodes))
    for sl in _slices(Z.shape[0], rows_per_batch):
        delta = Z[sl] - baseline
        path = baseline + nodes[:, None, None] * delta[None, :, :]  # (nodes, rows, features)
        grads = gradient(path.reshape(-1, Z.shape[1])).reshape(path.shape)
        values[sl] = delta * np.tensordot(weights, grads, axes=1)
    return values, scores, np.full(Z.shape[0], base_score), "integrated_gradients"


# -- permutation Shapley values: any detector -----------------------------------------------------


def _explain_permutation(model, Z, background, options):
    from skood.conformal import detector_scores

    if background is None:
        raise BackgroundNeeded(
            f"explain: {type(model).__name__} keeps no reference rows to take a baseline from; "
            "pass background= some normal rows (e.g. a sample of the training rows): the "
            "contributions are measured from their column-wise median."
        )
    baseline = np.median(_as_float_array(background), axis=0)

    def score(P):
        return np.asarray(detector_scores(model, P), dtype=np.float64)

    n, d = Z.shape
    rng = options["rng"]
    half = options["n_permutations"] // 2
    values = np.zeros_like(Z)
    scores = score(Z) if n else np.zeros(0)
    base_score = float(score(baseline[None, :])[0])
    rows_per_batch = max(1, options["batch_size"] // (2 * half * (d + 1)))
    for sl in _slices(n, rows_per_batch):
        rows = Z[sl]
        orders = [rng.permutation(d) for _ in range(half)]
        orders += [order[::-1] for order in orders]  # antithetic: each order and its reverse
        # For every row and order, the d + 1 points from the baseline to the row, switching
        # one column at a time in that order.
        points = np.empty((rows.shape[0], len(orders), d + 1, d))
        points[:] = baseline
        for o, order in enumerate(orders):
            for step, column in enumerate(order, start=1):
                points[:, o, step:, column] = rows[:, column, None]
        path_scores = score(points.reshape(-1, d)).reshape(rows.shape[0], len(orders), d + 1)
        gains = np.diff(path_scores, axis=2)  # (rows, orders, steps)
        for o, order in enumerate(orders):
            values[sl][:, order] += gains[:, o, :] / len(orders)
    return values, scores, np.full(n, base_score), "permutation"


# -- helpers --------------------------------------------------------------------------------------


def _baseline(background, default) -> np.ndarray:
    if background is None:
        return np.asarray(default, dtype=np.float64)
    return np.median(_as_float_array(background), axis=0)


def _as_float_array(X) -> np.ndarray:
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    return np.asarray(X, dtype=np.float64)


def _n_columns(X) -> int:
    return X.shape[1] if hasattr(X, "shape") else len(X[0])


def _feature_names(model, X) -> np.ndarray:
    columns = getattr(X, "columns", None)
    if columns is not None:
        return np.asarray([str(c) for c in columns])
    names = getattr(model, "feature_names_in_", None)
    if names is not None and len(names) == _n_columns(X):
        return np.asarray([str(c) for c in names])
    return np.asarray([f"x{i}" for i in range(_n_columns(X))])


def _slices(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))
