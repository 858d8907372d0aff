"""GaussianMahalanobis: Gaussian and class-conditional tied-covariance (Mahalanobis / GEM) scores."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.covariance import (
    OAS,
    EmpiricalCovariance,
    LedoitWolf,
    ShrunkCovariance,
    shrunk_covariance,
)
from sklearn.model_selection import KFold
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from skood.base import BaseDetector, finite_scores, fit_context, iter_slices

__all__ = ["GaussianMahalanobis"]

_COVARIANCES = {
    "empirical": EmpiricalCovariance,
    "ledoit_wolf": LedoitWolf,
    "oas": OAS,
    "shrunk": ShrunkCovariance,
}
_LOG_2PI = math.log(2.0 * math.pi)


def _is_dask(data) -> bool:
    """A dask array, dataframe or series, recognised without importing dask."""
    return type(data).__module__.split(".")[0] in ("dask", "dask_expr")


class GaussianMahalanobis(BaseDetector):
    """Gaussian log-density, or class-conditional Gaussians with a tied covariance.

    Without class labels it fits one full-covariance Gaussian and scores ``log N(x; mu, Sigma)``
    (the parametric alternative to a flow in QuantOD). With inlier class labels in ``y`` it fits
    one mean per class and a single covariance of the class-centred features (Lee et al., 2018),
    and scores the best class, ``max_k log N(x; mu_k, Sigma)`` (the Mahalanobis detector), or the
    equal-weight mixture ``log mean_k N(x; mu_k, Sigma)`` (GEM, Morteza & Li, 2022).

    Read more in ``docs/estimators.md``.

    Parameters
    ----------
    class_conditional : "auto" or bool, default="auto"
        ``"auto"``: class-conditional when ``y`` holds at least two inlier labels. ``True``
        requires labels; ``False`` ignores them.
    aggregate : {"max", "logsumexp"}, default="max"
        How class log-densities combine: ``"max"`` (Mahalanobis) or ``"logsumexp"`` minus
        ``log K`` (GEM).
    covariance : {"empirical", "ledoit_wolf", "oas", "shrunk"} or estimator, default="empirical"
        sklearn covariance estimator fitted on the centred features; any object with ``fit`` and
        a ``covariance_`` attribute works (it is cloned). ``"ledoit_wolf"`` is the better choice
        when features outnumber rows.
    reg_covar : float, default=1e-6
        Added to the covariance diagonal, and the floor of its eigenvalues: dead (constant) ReLU
        features make the covariance singular, and the detector must still work.
    contamination : float in (0, 0.5] or "auto", default=0.05
        Fraction of inliers below ``offset_``.
    offset_cv : int or None, default=5
        ``offset_`` is the ``contamination``-quantile of *out-of-fold* scores from this many
        folds, so it is not biased by scoring the rows the Gaussian was fitted on (a large bias
        when features are many and rows few). None uses the training scores (as EllipticEnvelope).
    inference_batch_size : int, default=65536
        Rows scored at a time; bounds memory for any number of rows.
    random_state : int, RandomState instance or None, default=None
        Shuffles the ``offset_cv`` folds.

    Attributes
    ----------
    means_ : ndarray of shape (n_components, n_features)
        The class means (one row when unconditional).
    classes_ : ndarray of shape (n_components,) or None
        The inlier labels modelled, or None for the unconditional Gaussian.
    covariance_ : ndarray of shape (n_features, n_features)
        The (tied) covariance, as returned by the covariance estimator.
    whitening_ : ndarray of shape (n_features, n_features)
        ``W`` with ``W W^T = (Sigma + reg I)^-1`` (eigenvalues floored at ``reg_covar``).
    log_det_ : float
        Log-determinant of the regularised covariance.
    offset_ : float
        Threshold on ``score_samples``.
    calibration_scores_ : ndarray of float64
        The sorted out-of-fold scores (``offset_cv``; else the training rows' scores) that
        ``offset_`` was set from.
    calibration_held_out_ : bool
        Whether the fitted score never saw those rows (held out, or nothing fitted), which
        conformal p-values need (:class:`skood.conformal.ConformalDetector` reuses them then).
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit``, when ``X`` has string column names.

    See Also
    --------
    QuantileFlowDetector : A normalizing-flow density on the same features.
    sklearn.covariance.EllipticEnvelope : Robust (MCD) single Gaussian.

    References
    ----------
    Lee, K., Lee, K., Lee, H., Shin, J. "A Simple Unified Framework for Detecting
    Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018.
    Morteza, P., Li, Y. "Provable Guarantees for Understanding Out-of-distribution Detection"
    (GEM), AAAI 2022.
    Taghikhah et al. "Quantile-based Maximum Likelihood Training for Outlier Detection", AAAI 2024.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import GaussianMahalanobis
    >>> rng = np.random.RandomState(0)
    >>> X = np.r_[rng.normal(0, 1, (100, 2)), rng.normal(6, 1, (100, 2))]
    >>> y = np.r_[np.zeros(100), np.ones(100)]
    >>> det = GaussianMahalanobis().fit(X, y)
    >>> det.predict([[0.0, 0.0], [6.0, 6.0], [3.0, -4.0]])
    array([ 1,  1, -1])
    """

    _renamed_parameters = {"batch_size": "inference_batch_size"}
    _parameter_constraints: dict = {
        **BaseDetector._parameter_constraints,
        "class_conditional": [StrOptions({"auto"}), "boolean"],
        "aggregate": [StrOptions({"max", "logsumexp"})],
        "covariance": [StrOptions(set(_COVARIANCES)), HasMethods(["fit"])],
        "reg_covar": [Interval(Real, 0, None, closed="left")],
        "offset_cv": [Interval(Integral, 2, None, closed="left"), None],
        "inference_batch_size": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        class_conditional="auto",
        *,
        aggregate="max",
        covariance="empirical",
        reg_covar=1e-6,
        contamination=0.05,
        offset_cv=5,
        inference_batch_size=65536,
        random_state=None,
    ):
        self.class_conditional = class_conditional
        self.aggregate = aggregate
        self.covariance = covariance
        self.reg_covar = reg_covar
        self.contamination = contamination
        self.offset_cv = offset_cv
        self.inference_batch_size = inference_batch_size
        self.random_state = random_state

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the Gaussian(s) on the inlier rows of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            ``-1`` marks outlier rows (left out); other values are inlier class labels.

        Returns
        -------
        self : GaussianMahalanobis
        """
        if _is_dask(X) or _is_dask(y):  # blocks on a cluster: the same fit from moments
            from skood.distributed import fit_gaussian

            return fit_gaussian(self, X, y)
        X, inliers, labels = self._validate_fit_data(X, y, dtype=np.float64)
        if not inliers.all():  # no full-size copy in the common all-inlier case
            X = X[inliers]
        self._check_fit_size(X)
        if self.class_conditional is True and labels is None:
            raise ValueError(
                "class_conditional=True needs inlier class labels in y; got y=None. Pass the "
                "labels, or use class_conditional='auto' or False."
            )
        use_classes = labels is not None and (
            self.class_conditional is True
            or (self.class_conditional == "auto" and np.unique(labels).size >= 2)
        )
        labels = labels if use_classes else None
        stats = self._fit_stats(X, labels)
        self.classes_, self.means_, self.covariance_, self.whitening_, self.log_det_ = stats
        # Out-of-fold scores come from the fold models, not from the model fitted on every row.
        self._set_offset(self._calibration_scores(X, labels), held_out=False)
        return self

    #: Beyond this many features, a covariance from fewer rows than features is refused: its
    #: d x d matrix and eigendecomposition cost minutes and gigabytes for a rank-n estimate.
    _MAX_WIDE_FEATURES = 4096
    #: |x| above this overflows the squares a covariance sums (float64 reaches 1.8e308).
    _MAX_MAGNITUDE = 1e150

    def _check_fit_size(self, X: np.ndarray) -> None:
        name = type(self).__name__
        n, d = X.shape
        if d > self._MAX_WIDE_FEATURES and d > n:
            raise ValueError(
                f"{name}: X has {d} features but only {n} inlier rows; a {d} x {d} covariance "
                f"({d * d * 8 / 1e9:.1f} GB) estimated from {n} rows has rank {n} at most and its "
                "eigendecomposition takes minutes. Reduce the dimension first, e.g. "
                "make_pipeline(PCA(n_components=min(n_rows - 1, 256)), GaussianMahalanobis())."
            )
        peak = float(np.max(np.abs(X))) if X.size else 0.0
        if peak > self._MAX_MAGNITUDE:
            raise ValueError(
                f"{name}: X holds values up to {peak:.3g}, whose squares overflow float64 in "
                "the covariance. Scale the features first (e.g. StandardScaler), as the "
                "Mahalanobis distance does not depend on the unit."
            )

    def _fit_stats(self, X: np.ndarray, labels: np.ndarray | None, rows: np.ndarray | None = None):
        """Means, covariance and whitening from ``X[rows]`` (all rows when None).

        Never copies ``X`` whole for the default empirical covariance: class sums come from a
        sparse one-hot product and the class-centred scatter is accumulated in bounded blocks,
        which is exactly ``EmpiricalCovariance(assume_centered=True)`` on the centred rows.
        """
        n_rows = X.shape[0] if rows is None else rows.shape[0]
        if labels is None:
            classes, codes = None, np.zeros(n_rows, dtype=np.intp)
        else:
            classes, codes = np.unique(labels, return_inverse=True)
        n_classes = codes.max() + 1
        cols = np.arange(n_rows) if rows is None else rows
        onehot = sp.csr_matrix((np.ones(n_rows), (codes, cols)), shape=(n_classes, X.shape[0]))
        means = np.asarray(onehot @ X) / np.bincount(codes, minlength=n_classes)[:, None]

        def centred(sl: slice) -> np.ndarray:
            # Slices of X are views; only a subset of rows (a CV fold) needs a gather.
            block = X[sl] if rows is None else X[rows[sl]]
            return block - (means[0] if n_classes == 1 else means[codes[sl]])

        if isinstance(self.covariance, str) and self.covariance == "empirical":
            covariance = np.zeros((X.shape[1], X.shape[1]))
            for sl in iter_slices(n_rows, self.inference_batch_size):
                block = centred(sl)
                covariance += block.T @ block
            covariance /= n_rows
        else:  # shrinkage estimators need the centred rows themselves
            cov_est = (
                _COVARIANCES[self.covariance]()
                if isinstance(self.covariance, str)
                else clone(self.covariance)
            )
            if "assume_centered" in cov_est.get_params():
                cov_est.set_params(assume_centered=True)
            covariance = cov_est.fit(centred(slice(None))).covariance_
        return classes, means, covariance, *self._whiten(covariance)

    def _whiten(self, covariance: np.ndarray) -> tuple[np.ndarray, float]:
        """The whitening matrix ``W`` (``W^T Sigma W = I``) and ``log det Sigma``, regularised."""
        eigval, eigvec = np.linalg.eigh(covariance + self.reg_covar * np.eye(covariance.shape[0]))
        eigval = np.maximum(eigval, max(self.reg_covar, np.finfo(np.float64).tiny))
        return eigvec / np.sqrt(eigval), float(np.sum(np.log(eigval)))

    def _covariance_from_moments(self, scatter: np.ndarray, fourth: float, n: int) -> np.ndarray:
        """The named covariance estimator from the centred rows' moments alone.

        ``scatter = Z^T Z`` and ``fourth = sum_i ||z_i||^4`` of the class-centred rows ``Z``
        determine the empirical, shrunk, Ledoit–Wolf and OAS estimates (the formulas of
        scikit-learn's estimators with ``assume_centered=True``), so data in blocks (a Dask
        array) give the same covariance as the rows in memory. A robust estimator such as
        ``MinCovDet`` needs the rows themselves.
        """
        p = scatter.shape[0]
        emp_cov = scatter / n
        name = self.covariance
        if name == "empirical":
            return emp_cov
        if name == "shrunk":
            return shrunk_covariance(emp_cov, _COVARIANCES["shrunk"]().shrinkage)
        if p == 1:  # one feature: every shrinkage gives the same estimate
            return emp_cov
        mu = np.trace(emp_cov) / p
        if name == "oas":
            alpha = np.mean(emp_cov**2)
            num = alpha + mu**2
            den = (n + 1) * (alpha - mu**2 / p)
            shrinkage = 1.0 if den == 0 else min(num / den, 1.0)
        else:  # ledoit_wolf: sklearn's ledoit_wolf_shrinkage from the same two moments
            delta_ = np.sum(scatter**2) / n**2
            beta = 1.0 / (p * n) * (fourth / n - delta_)
            delta = (delta_ - 2.0 * mu * np.trace(scatter) / n + p * mu**2) / p
            beta = min(beta, delta)
            shrinkage = 0 if beta == 0 else beta / delta
        covariance = (1.0 - shrinkage) * emp_cov
        covariance.flat[:: p + 1] += shrinkage * mu
        return covariance

    def _calibration_scores(self, X: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        if self.offset_cv is None or X.shape[0] < 2:
            return self._score(X)
        n_splits = min(self.offset_cv, X.shape[0])
        folds = KFold(n_splits, shuffle=True, random_state=self.random_state).split(X)
        scores = np.empty(X.shape[0])
        for train, test in folds:
            fold_labels = None if labels is None else labels[train]
            _, means, _, whitening, log_det = self._fit_stats(X, fold_labels, rows=train)
            scores[test] = self._score(X[test], means, whitening, log_det)
        return scores

    def component_log_densities(self, X) -> np.ndarray:
        """``log N(x; mu_k, Sigma)`` for every row and component, shape (n_samples, n_components)."""
        X = self._check_fitted_and_validate(X, dtype=np.float64)
        return self._log_densities(X, self.means_, self.whitening_, self.log_det_)

    def _log_densities(self, X, means, whitening, log_det) -> np.ndarray:
        # ||(x - mu_k) W||^2 = ||xW||^2 - 2 xW.muW_k + ||muW_k||^2: one matmul for all classes.
        xw = X @ whitening
        mw = means @ whitening
        sq = (
            np.einsum("ij,ij->i", xw, xw)[:, None] - 2.0 * xw @ mw.T + np.einsum("ij,ij->i", mw, mw)
        )
        np.maximum(sq, 0.0, out=sq)
        return -0.5 * (sq + log_det + X.shape[1] * _LOG_2PI)

    def _score(self, X, means=None, whitening=None, log_det=None) -> np.ndarray:
        if means is None:
            means, whitening, log_det = self.means_, self.whitening_, self.log_det_
        out = np.empty(X.shape[0])
        for sl in iter_slices(X.shape[0], self.inference_batch_size):
            dens = self._log_densities(X[sl], means, whitening, log_det)
            if self.aggregate == "max":
                out[sl] = dens.max(axis=1)
            else:
                out[sl] = logsumexp(dens, axis=1) - math.log(dens.shape[1])
        return finite_scores(out)

    def score_samples(self, X) -> np.ndarray:
        """Gaussian log-density of each row (nats; higher = more normal).

        Unconditional: ``log N(x; mu, Sigma)``. Class-conditional: ``max_k log N(x; mu_k, Sigma)``
        (``aggregate="max"``) or ``log mean_k N(x; mu_k, Sigma)`` (``"logsumexp"``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples,)
        """
        X = self._check_fitted_and_validate(X, dtype=np.float64)
        return self._score(X)

    def mahalanobis(self, X) -> np.ndarray:
        """Squared Mahalanobis distance to the nearest class mean, shape (n_samples,)."""
        X = self._check_fitted_and_validate(X, dtype=np.float64)
        dens = self._log_densities(X, self.means_, self.whitening_, self.log_det_)
        return -2.0 * dens.max(axis=1) - self.log_det_ - X.shape[1] * _LOG_2PI
