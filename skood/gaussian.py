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
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from skood.base import BaseDetector, finite_scores, fit_context, iter_slices, warn_user

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

    Read more in the :ref:`User Guide <paper_mahalanobis>`.

    Parameters
    ----------
    class_conditional : "auto" or bool, default="auto"
        ``"auto"``: class-conditional when ``y`` holds at least two inlier labels. ``True``
        requires labels; ``False`` ignores them.
    aggregate : {"max", "logsumexp"}, default="max"
        How class log-densities combine: ``"max"`` (Mahalanobis) or ``"logsumexp"`` minus
        ``log K`` (GEM). Set on a fitted class-conditional model, it changes the scores, and
        ``predict`` refuses until the model is fitted again (``offset_`` is for the old ones).
    covariance : {"auto", "empirical", "ledoit_wolf", "oas", "shrunk"} or estimator, \
default="auto"
        sklearn covariance estimator fitted on the centred features; any object with ``fit`` and
        a ``covariance_`` attribute works (it is cloned). ``"auto"``: the empirical covariance
        (the authors' code) when it has at least 2 degrees of freedom (rows minus classes, in
        the ``offset_cv`` fold models) per feature, else OAS. Below that, ``fit`` warns about an
        explicit ``"empirical"``: its inverse inflates new rows' distances and ``offset_`` lets
        outliers through. Measured on the development suite (``benchmarks/dev_suite/``, 55
        sets, 3 seeds, group-equal mean AUROC %): ``"auto"`` 87.78, empirical 87.70, OAS 87.62,
        Ledoit–Wolf 87.56; on the 30 pretrained-feature sets, all with fewer rows than
        features, OAS 87.6 against the empirical 87.2.
    reg_covar : float, default=1e-6
        Added to the covariance diagonal, and the floor of its eigenvalues: dead (constant) ReLU
        features make the covariance singular, and the detector must still work.
    contamination : float in (0, 0.5] or "auto", default=0.05
        Fraction of inliers below ``offset_``.
    offset_cv : int or None, default=5
        ``offset_`` is the ``contamination``-quantile of *out-of-fold* scores from this many
        folds, so it is not biased by scoring the rows the Gaussian was fitted on (a large bias
        when features are many and rows few). None uses the training scores (as EllipticEnvelope).
        Beyond 50,000 rows, the out-of-fold scores of 50,000 random rows set it, each fold
        model leaving out that fold's rows: a fold model costs only its rows, and the fit about
        one ``X^T X`` product.
    inference_batch_size : int, default=65536
        Rows scored at a time; bounds memory for any number of rows.
    random_state : int, RandomState instance or None, default=None
        Shuffles the ``offset_cv`` folds (and draws the calibration rows beyond 50,000).

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
    covariance_method_ : str
        The covariance used: ``covariance`` with ``"auto"`` resolved (a class name for an
        estimator object).
    offset_ : float
        Threshold on ``score_samples``.
    calibration_scores_ : ndarray of float64
        The sorted out-of-fold scores (``offset_cv``; else the training rows' scores) that
        ``offset_`` was set from, of at most 50,000 rows (drawn at random beyond that).
    calibration_held_out_ : bool
        Whether the fitted score never saw those rows (held out, or nothing fitted), which
        conformal p-values need (:class:`skood.conformal.ConformalDetector` reuses them then).
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
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

    @property
    def _scoring_params(self) -> tuple[str, ...]:
        # aggregate combines the class densities; a single Gaussian has none to combine.
        return ("aggregate",) if getattr(self, "classes_", None) is not None else ()

    _parameter_constraints: dict = {
        **BaseDetector._parameter_constraints,
        "class_conditional": [StrOptions({"auto"}), "boolean"],
        "aggregate": [StrOptions({"max", "logsumexp"})],
        "covariance": [StrOptions({"auto", *_COVARIANCES}), HasMethods(["fit"])],
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
        covariance="auto",
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
        n_classes = 1 if labels is None else np.unique(labels).size
        self._choose_covariance(X.shape[0], X.shape[1], n_classes)
        if isinstance(self.covariance, str):
            model, calibration = self._fit_from_moments(X, labels)
        else:  # a covariance estimator object needs the centred rows themselves
            model, calibration = self._fit_from_rows(X, labels)
        self.classes_, self.means_, self.covariance_, self.whitening_, self.log_det_ = model
        self._set_offset(calibration, held_out=False)
        return self

    #: Beyond this many features, a covariance from fewer rows than features is refused: its
    #: d x d matrix and eigendecomposition cost minutes and gigabytes for a rank-n estimate.
    _MAX_WIDE_FEATURES = 4096
    #: |x| above this overflows the squares a covariance sums (float64 reaches 1.8e308).
    _MAX_MAGNITUDE = 1e150
    #: Rows per block of the moment passes: a block and its centred copy stay in the CPU cache.
    _FIT_BLOCK_ROWS = 4096
    #: At most this many rows (drawn at random beyond it) are scored to set ``offset_``: the
    #: 0.05-quantile of 50,000 scores is known to +-0.002 in probability (two standard errors),
    #: and scoring every row of a large X would cost more than the fit
    #: (``benchmarks/speed/speed.md``).
    _MAX_CALIBRATION_ROWS = 50_000

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

    #: An empirical covariance from fewer degrees of freedom than this many per feature is
    #: flagged. From ``nu`` degrees of freedom (rows minus classes) its inverse inflates the
    #: squared Mahalanobis distance of a new row by about ``nu / (nu - d - 1)`` (Hotelling's
    #: T^2), 2x at ``nu = 2 (d + 1)`` and without bound as ``nu`` nears ``d``; the ``offset_cv``
    #: fold models, with fewer rows still, inflate more, so ``offset_`` falls far below the
    #: scores of new inliers. Measured on standard normal data, d = 10, contamination 0.05:
    #: 12 rows put ``offset_`` at -3e6 and a point 6 sigma out on every feature passed; 20 rows
    #: flagged 1.3 % of new inliers; 40 rows 4.8 %. Digits, one class, 89 rows of 44 informative
    #: pixels: 0.4-1.1 % of new inliers flagged against Ledoit-Wolf's 2.9-3.7 %.
    _MIN_DOF_PER_FEATURE = 2

    def _choose_covariance(self, n_rows: int, n_features: int, n_classes: int) -> None:
        """Set ``covariance_method_``: ``"auto"`` resolved, then warn if it is underdetermined.

        ``"auto"`` is the empirical covariance where it has at least
        :attr:`_MIN_DOF_PER_FEATURE` degrees of freedom per feature, and OAS (the shrinkage
        made for fewer rows than that) below: exactly where an empirical one would be warned
        about.
        """
        if self.covariance == "auto":
            enough = self._covariance_dof(n_rows, n_classes) >= (
                self._MIN_DOF_PER_FEATURE * n_features
            )
            self.covariance_method_ = "empirical" if enough else "oas"
        elif isinstance(self.covariance, str):
            self.covariance_method_ = self.covariance
        else:
            self.covariance_method_ = type(self.covariance).__name__
        self._warn_if_underdetermined(n_rows, n_features, n_classes)

    def _warn_if_underdetermined(self, n_rows: int, n_features: int, n_classes: int) -> None:
        """Warn when an unshrunk covariance has too few rows per feature to threshold with."""
        empirical = self.covariance_method_ in ("empirical", "EmpiricalCovariance")
        dof = self._covariance_dof(n_rows, n_classes)
        needed = self._MIN_DOF_PER_FEATURE * n_features
        if not empirical or dof >= needed:
            return  # the shrinkage estimators are made for this regime
        enough = n_rows + 1
        while self._covariance_dof(enough, n_classes) < needed:
            enough += 1
        folds = f" (in the offset_cv={self.offset_cv} fold models)" if self.offset_cv else ""
        singular = ", and fewer than the features: it is singular" if dof < n_features else ""
        warn_user(
            f"{type(self).__name__}: the empirical covariance of {n_features} features has "
            f"{max(dof, 0)} degrees of freedom{folds} from {n_rows} inlier rows and {n_classes} "
            f"class mean(s): fewer than {self._MIN_DOF_PER_FEATURE} per feature{singular}. Its "
            "inverse inflates the Mahalanobis distances of new rows, so offset_ lets outliers "
            f"through. Use covariance='ledoit_wolf' (or 'oas'), give at least {enough} inlier "
            "rows, or reduce the features (e.g. PCA)."
        )

    def _covariance_dof(self, n_rows: int, n_classes: int) -> int:
        """The fewest degrees of freedom among this fit's covariances: rows minus class means.

        With ``offset_cv``, the fewest rows are a fold model's, which leaves out the largest
        fold of the calibration rows.
        """
        n_fit = n_rows
        if self.offset_cv is not None and n_rows >= 2:
            n_calibration = min(n_rows, self._MAX_CALIBRATION_ROWS)
            n_fit -= math.ceil(n_calibration / min(self.offset_cv, n_calibration))
        return n_fit - n_classes

    def _check_magnitude(self, X: np.ndarray) -> None:
        peak = max(float(np.max(X)), -float(np.min(X))) if X.size else 0.0
        if peak > self._MAX_MAGNITUDE or not np.isfinite(peak):
            raise ValueError(
                f"{type(self).__name__}: X holds values up to {peak:.3g}, whose squares overflow "
                "float64 in the covariance. Scale the features first (e.g. StandardScaler), as "
                "the Mahalanobis distance does not depend on the unit."
            )

    def _calibration_folds(self, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows whose scores set ``offset_`` (all, or ``_MAX_CALIBRATION_ROWS`` drawn at
        random), and the ``offset_cv`` fold of each (all 0 without folds)."""
        rng = check_random_state(self.random_state)
        rows = np.arange(n_rows)
        if n_rows > self._MAX_CALIBRATION_ROWS:
            rows = np.sort(rng.choice(n_rows, self._MAX_CALIBRATION_ROWS, replace=False))
        folds = np.zeros(rows.size, dtype=np.intp)
        if self.offset_cv is not None and rows.size >= 2:
            kfold = KFold(min(self.offset_cv, rows.size), shuffle=True, random_state=rng)
            for f, (_, test) in enumerate(kfold.split(np.empty((rows.size, 0)))):
                folds[test] = f
        return rows, folds

    def _fit_from_moments(self, X: np.ndarray, labels: np.ndarray | None):
        """The model, and the calibration scores, from the moments of ``X`` without copying it.

        The class-centred scatter is ``X^T X - sum_k n_k mu_k mu_k^T``: one BLAS product over
        ``X`` as it is, the floor of any covariance fit (when the means are so far from 0, in
        units of the spread, that the subtraction would cost digits, the rows are centred block
        by block instead). A fold's model leaves out that fold's test rows ``T``: its class
        means are ``mu_k + delta_k`` and its scatter is ``S - Z_T^T Z_T - sum_k n_k delta_k
        delta_k^T``, with ``Z_T`` the test rows centred by ``mu`` and ``delta_k`` (the shift, the gap
        between the two means, O(1/sqrt(n))) leaving no room for cancellation. So the folds cost
        only their test rows, of which there are at most ``_MAX_CALIBRATION_ROWS`` in all. Every
        string ``covariance`` is a function of these moments (:meth:`_covariance_from_moments`);
        Ledoit–Wolf also needs ``sum ||z||^4``, for which one more pass over ``X`` centres each
        row by each model's class mean.
        """
        n, d = X.shape
        classes, codes, n_classes = self._class_codes(labels, n)
        counts = np.bincount(codes, minlength=n_classes)
        sums = self._class_sums(X, codes, n_classes)
        means = sums / counts[:, None]
        scatter = self._class_scatter(X, codes, means, counts)

        rows, folds = self._calibration_folds(n)
        fold_parts = []  # per fold: its test rows, its training-row count, scatter and shifts
        for f in range(int(folds.max()) + 1 if folds.max() > 0 else 0):
            test = rows[folds == f]
            X_test, codes_test = X[test], codes[test]
            rest = counts - np.bincount(codes_test, minlength=n_classes)
            keep = rest > 0  # a class with all its rows in this fold is not in its model
            rest_sums = sums - self._class_sums(X_test, codes_test, n_classes)
            shift = np.full((n_classes, d), np.nan)  # NaN: a class this fold's model lacks
            shift[keep] = rest_sums[keep] / rest[keep, None] - means[keep]
            Z_test = X_test - means[codes_test]
            fold_scatter = scatter - Z_test.T @ Z_test - (shift[keep].T * rest[keep]) @ shift[keep]
            fold_parts.append((X_test, rest[keep].sum(), fold_scatter, shift))
        fourth, fold_fourth = 0.0, np.zeros(len(fold_parts))
        if self.covariance_method_ == "ledoit_wolf":
            shifts = [part[3] for part in fold_parts]
            fourth, fold_fourth = self._fourth_moments(X, codes, means, shifts, rows, folds)
        covariance = self._covariance_from_moments(scatter, fourth, n)
        whitening, log_det = self._whiten(covariance)
        model = (classes, means, covariance, whitening, log_det)
        if not fold_parts:  # no folds: the model's own scores of the calibration rows
            return model, self._score(X[rows], means, whitening, log_det)
        scores = np.empty(rows.size)
        for f, (X_test, n_train, fold_scatter, shift) in enumerate(fold_parts):
            fold_cov = self._covariance_from_moments(fold_scatter, fold_fourth[f], n_train)
            keep = np.isfinite(shift[:, 0])
            fold_means = means[keep] + shift[keep]
            scores[folds == f] = self._score(X_test, fold_means, *self._whiten(fold_cov))
        return model, scores

    @staticmethod
    def _class_codes(labels: np.ndarray | None, n_rows: int):
        """``(classes, codes, n_classes)``: one class, coded 0, when there are no labels."""
        if labels is None:
            return None, np.zeros(n_rows, dtype=np.intp), 1
        classes, codes = np.unique(labels, return_inverse=True)
        return classes, codes, classes.size

    @staticmethod
    def _class_sums(X: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
        if n_classes == 1:  # a BLAS product: faster than a reduction over the rows
            return (np.ones(codes.size) @ X)[None]
        onehot = sp.csr_matrix(
            (np.ones(codes.size), (codes, np.arange(codes.size))), shape=(n_classes, codes.size)
        )
        return np.asarray(onehot @ X)

    #: The Gram identity ``X^T X - n mu mu^T`` loses about log10(mu^2 / var) digits; beyond
    #: this ratio (2 digits of float64's 16) the rows are centred block by block before the
    #: product instead, which costs about 1.4 times the product (``benchmarks/speed/speed.md``).
    _MAX_MEAN_TO_SPREAD = 100.0

    def _class_scatter(self, X, codes, means, counts) -> np.ndarray:
        """``sum_i (x_i - mu_{c_i})(x_i - mu_{c_i})^T``."""
        gram = X.T @ X
        if not np.isfinite(gram).all():  # |x| beyond ~1e154: the squares overflow
            self._check_magnitude(X)
        scatter = gram - (means.T * counts) @ means
        spread = np.maximum(np.diag(scatter) / codes.size, np.finfo(np.float64).tiny)
        if np.max(means**2 / spread) <= self._MAX_MEAN_TO_SPREAD:
            return scatter
        scatter = np.zeros_like(gram)
        for sl in iter_slices(codes.size, self._FIT_BLOCK_ROWS):
            Z = X[sl] - means[codes[sl]]
            scatter += Z.T @ Z
        return scatter

    def _fourth_moments(self, X, codes, means, shifts, rows, folds):
        """``sum ||x - mu||^4`` over every row for the model, and over each fold's training rows
        (centred by that fold's means, ``mu + shift``) for the fold models: Ledoit–Wolf's
        shrinkage needs it."""
        in_test = np.full(X.shape[0], -1)
        in_test[rows] = folds if shifts else -1
        fourth, fold_fourth = 0.0, np.zeros(len(shifts))
        for sl in iter_slices(X.shape[0], self._FIT_BLOCK_ROWS):
            Z = X[sl] - means[codes[sl]]
            sq = np.einsum("ij,ij->i", Z, Z)
            fourth += float(sq @ sq)
            for f, shift in enumerate(shifts):
                train = in_test[sl] != f
                row_shift = shift[codes[sl][train]]  # ||z - shift||^2, expanded
                sq_f = sq[train] - 2 * np.einsum("ij,ij->i", Z[train], row_shift)
                sq_f += np.einsum("ij,ij->i", row_shift, row_shift)
                fold_fourth[f] += float(sq_f @ sq_f)
        return fourth, fold_fourth

    def _fit_from_rows(self, X: np.ndarray, labels: np.ndarray | None):
        """:meth:`_fit_from_moments` for a covariance estimator object, fitted on the rows."""
        self._check_magnitude(X)
        model = self._fit_stats(X, labels)
        rows, folds = self._calibration_folds(X.shape[0])
        if folds.max() == 0:
            _, means, _, whitening, log_det = model
            return model, self._score(X[rows], means, whitening, log_det)
        scores = np.empty(rows.size)
        for f in range(int(folds.max()) + 1):
            train = np.ones(X.shape[0], dtype=bool)
            train[rows[folds == f]] = False
            train = np.flatnonzero(train)
            fold_labels = None if labels is None else labels[train]
            _, means, _, whitening, log_det = self._fit_stats(X, fold_labels, rows=train)
            scores[folds == f] = self._score(X[rows[folds == f]], means, whitening, log_det)
        return model, scores

    def _fit_stats(self, X: np.ndarray, labels: np.ndarray | None, rows: np.ndarray | None = None):
        """Classes, means, covariance and whitening from ``X[rows]`` (all rows when None).

        The covariance estimator is fitted on the class-centred rows.
        """
        X = X if rows is None else X[rows]  # the estimator needs the centred rows: a copy
        classes, codes, n_classes = self._class_codes(labels, X.shape[0])
        counts = np.bincount(codes, minlength=n_classes)
        means = self._class_sums(X, codes, n_classes) / counts[:, None]
        centred = X - means[codes]
        cov_est = clone(self.covariance)
        if "assume_centered" in cov_est.get_params():
            cov_est.set_params(assume_centered=True)
        covariance = cov_est.fit(centred).covariance_
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
        name = self.covariance_method_
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
