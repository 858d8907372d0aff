"""GaussianMahalanobis: Gaussian and class-conditional tied-covariance (Mahalanobis / GEM) scores.

Its model is a function of sums over the inlier rows, :class:`GaussianMoments`, which add up
block by block: the in-memory fit and the Dask fit (:func:`skood.distributed.fit_gaussian`) both
compute them and call the same code, :meth:`GaussianMahalanobis.fit_moments`.
"""

from __future__ import annotations

import math
import sys
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
from sklearn.utils.validation import check_is_fitted

from skood.base import BaseDetector, fit_context, iter_slices, warn_user

__all__ = ["GaussianMahalanobis", "GaussianMoments"]

_COVARIANCES = {
    "empirical": EmpiricalCovariance,
    "ledoit_wolf": LedoitWolf,
    "oas": OAS,
    "shrunk": ShrunkCovariance,
}
_LOG_2PI = math.log(2.0 * math.pi)
#: |x| above this overflows the squares a covariance sums (float64 reaches 1.8e308).
_MAX_MAGNITUDE = 1e150


def _is_dask_collection(data) -> bool:
    """Whether ``data`` is a Dask collection, asked of dask itself only where it is loaded.

    A Dask array or dataframe cannot exist before dask is imported, so skood never imports it.
    """
    dask_base = sys.modules.get("dask.base")
    return dask_base is not None and bool(dask_base.is_dask_collection(data))


def _check_magnitude(X: np.ndarray) -> None:
    peak = max(float(np.max(X)), -float(np.min(X))) if X.size else 0.0
    if peak > _MAX_MAGNITUDE or not np.isfinite(peak):
        raise ValueError(
            f"GaussianMahalanobis: X holds values up to {peak:.3g}, whose squares overflow "
            "float64 in the covariance. Scale the features first (e.g. StandardScaler), as "
            "the Mahalanobis distance does not depend on the unit."
        )


def _class_codes(y, classes, n_rows: int):
    """``(classes, codes)``: no classes and every row coded 0 when ``y`` is None."""
    if y is None:
        if classes is not None:
            raise ValueError("GaussianMoments: classes were given without the labels y.")
        return None, np.zeros(n_rows, dtype=np.intp)
    y = np.asarray(y)
    if y.shape != (n_rows,):
        raise ValueError(f"GaussianMoments: y has shape {y.shape}, X has {n_rows} rows.")
    if classes is None:
        classes, codes = np.unique(y, return_inverse=True)
        return classes, codes.reshape(-1)
    classes = np.unique(np.asarray(classes))
    codes = np.clip(np.searchsorted(classes, y), 0, classes.size - 1)
    unknown = classes[codes] != y
    if unknown.any():
        raise ValueError(
            f"GaussianMoments: y holds label(s) {list(np.unique(y[unknown]))[:10]} that are not "
            f"among classes ({list(classes)[:10]})."
        )
    return classes, codes


def _class_sums(X: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    if n_classes == 1:  # a BLAS product: faster than a reduction over the rows
        return (np.ones(codes.size) @ X)[None]
    onehot = sp.csr_matrix(
        (np.ones(codes.size), (codes, np.arange(codes.size))), shape=(n_classes, codes.size)
    )
    return np.asarray(onehot @ X)


def _about_means(moments: GaussianMoments):
    """``(classes present, their means, mean - centre, scatter about the means, rows)``.

    The scatter about the means is ``scatter - sum_k n_k d_k d_k^T`` with ``d_k`` the mean's
    offset from the centre: about the origin, the Gram identity ``X^T X - sum_k n_k mu_k
    mu_k^T``.
    """
    keep = moments.counts > 0
    counts = moments.counts[keep]
    delta = moments.sums[keep] / counts[:, None]
    scatter = moments.scatter - (delta.T * counts) @ delta
    return keep, moments.centre[keep] + delta, delta, scatter, counts.sum()


class GaussianMoments:
    """Sums over inlier rows from which :class:`GaussianMahalanobis` computes its model.

    Per class: the row count, the sum of ``z = x - centre[class]``, and over all classes the
    scatter ``sum z z^T`` and ``sum ||z||^4``. They are sums over rows, so the moments of two
    blocks of rows are ``a + b`` (``sum(parts)`` too): data in blocks, on a cluster or arriving
    over time, is summarised block by block, and :meth:`GaussianMahalanobis.fit_moments` turns
    the total into the model, the same code as ``fit``. Every covariance the estimator names
    (``"empirical"``, ``"shrunk"``, ``"oas"``, ``"ledoit_wolf"``) is a function of them; a
    covariance *estimator object* needs the rows themselves.

    With ``offset_cv`` folds, ``folds`` holds the moments of each fold model's training rows
    (every row outside that fold): its scores of the fold's rows set ``offset_``.

    Moments about the origin (the default) give the model in one pass. Two cases need a second
    pass over the same rows, ``from_rows(..., about=first)``, about the class means (and each
    fold model's about its own), which :meth:`GaussianMahalanobis.moments_suffice` tells: means
    more than 10 spreads from the origin (the scatter about the origin would lose digits to
    cancellation), and Ledoit–Wolf, whose ``fourth`` must be about the means.

    Parameters
    ----------
    counts : array-like of shape (n_classes,)
        Rows per class.
    sums : array-like of shape (n_classes, n_features)
        ``sum (x - centre[k])`` over the rows of class ``k``.
    scatter : array-like of shape (n_features, n_features)
        ``sum (x - centre[k]) (x - centre[k])^T`` over every row, ``k`` its class.
    fourth : float or None, default=None
        ``sum ||x - centre[k]||^4`` over every row, or None where not computed (only
        Ledoit–Wolf reads it, as the fourth moment about the class means).
    classes : array-like of shape (n_classes,) or None, default=None
        The sorted class labels, or None for one Gaussian.
    centre : array-like of shape (n_classes, n_features) or None, default=None
        The point each class's rows are taken about; None: the origin.
    folds : sequence of GaussianMoments, default=()
        The moments of each ``offset_cv`` fold model's training rows.

    Attributes
    ----------
    counts, sums, scatter, fourth, classes, centre : as the parameters (ndarrays, float64)
    folds : tuple of GaussianMoments

    See Also
    --------
    GaussianMahalanobis.fit_moments : The model from these moments.

    Examples
    --------
    >>> import numpy as np
    >>> from skood.gaussian import GaussianMahalanobis, GaussianMoments
    >>> X = np.random.default_rng(0).normal(size=(1000, 3))
    >>> moments = sum(GaussianMoments.from_rows(block) for block in np.array_split(X, 4))
    >>> det = GaussianMahalanobis(offset_cv=None).fit_moments(moments)
    >>> det = det.calibrate_offset(det.score_samples(X), held_out=False)
    >>> full = GaussianMahalanobis(offset_cv=None).fit(X)
    >>> bool(np.allclose(det.covariance_, full.covariance_, rtol=1e-12))
    True
    >>> bool(np.isclose(det.offset_, full.offset_, rtol=1e-12))
    True
    """

    #: Rows per block when rows are centred: a block and its centred copy stay in the CPU cache.
    _BLOCK_ROWS = 4096

    def __init__(
        self, counts, sums, scatter, fourth=None, *, classes=None, centre=None, folds=()
    ) -> None:
        self.counts = np.asarray(counts, dtype=np.float64).reshape(-1)
        self.sums = np.asarray(sums, dtype=np.float64)
        self.scatter = np.asarray(scatter, dtype=np.float64)
        self.fourth = None if fourth is None else float(fourth)
        self.classes = None if classes is None else np.asarray(classes)
        self.centre = (
            np.zeros_like(self.sums) if centre is None else np.asarray(centre, dtype=np.float64)
        )
        self.folds = tuple(folds)
        n_classes, n_features = self.counts.size, self.sums.shape[-1]
        if (
            self.sums.shape != (n_classes, n_features)
            or self.scatter.shape != (n_features, n_features)
            or self.centre.shape != self.sums.shape
            or (self.classes is not None and self.classes.shape != (n_classes,))
            or (self.classes is None and n_classes != 1)
        ):
            raise ValueError(
                f"GaussianMoments: counts {self.counts.shape}, sums {self.sums.shape}, scatter "
                f"{self.scatter.shape} and centre {self.centre.shape} do not agree on "
                "(n_classes,), (n_classes, n_features), (n_features, n_features) and "
                "(n_classes, n_features); one class without classes."
            )

    @classmethod
    def from_rows(cls, X, y=None, *, classes=None, folds=(), about=None) -> GaussianMoments:
        """The moments of the rows of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inlier rows (leave the outlier rows out).
        y : array-like of shape (n_samples,), default=None
            Their class labels for class-conditional moments; None for one Gaussian.
        classes : array-like, default=None
            Every class of the whole data, of which a block may lack some (moments add only
            with the same classes). Default: the labels in ``y``.
        folds : sequence of array-like of int, default=()
            The rows of ``X`` in each ``offset_cv`` fold
            (:meth:`GaussianMahalanobis.calibration_folds`): each fold model's training rows
            are every other row, and their moments are kept in ``folds``.
        about : GaussianMoments, default=None
            The total moments of a first pass over all the data (every block of which ``X`` is
            one, with the same classes and folds): these are taken about its class means, each
            fold model's about its own, and include ``fourth``. Default: about the origin,
            without ``fourth``.

        Returns
        -------
        GaussianMoments
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"GaussianMoments: X must be 2-D, got {X.ndim}-D.")
        classes, codes = _class_codes(y, classes, X.shape[0])
        n_classes = 1 if classes is None else classes.size
        folds = [np.asarray(test, dtype=np.intp).reshape(-1) for test in folds]
        counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
        if about is None:
            centre = np.zeros((n_classes, X.shape[1]))
            fold_centres = [centre] * len(folds)
            sums = _class_sums(X, codes, n_classes)
            scatter = X.T @ X
            if not np.isfinite(scatter).all():  # |x| beyond ~1e154: the squares overflow
                _check_magnitude(X)
            fourth, fold_fourth = None, [None] * len(folds)
        else:
            about._check_matches(classes, len(folds), X.shape[1])
            centre = np.where(np.isfinite(about.means), about.means, 0.0)  # 0: a class without rows
            fold_centres = [np.where(np.isfinite(f.means), f.means, centre) for f in about.folds]
            sums, scatter, fourth, fold_fourth = cls._centred_sums(
                X, codes, centre, folds, fold_centres
            )
        fold_moments = []
        for test, fold_centre, fold_4 in zip(folds, fold_centres, fold_fourth):
            # the fold model's rows: every row less the fold's, then taken about its own centre
            Z = X[test] - centre[codes[test]]
            rest = counts - np.bincount(codes[test], minlength=n_classes)
            rest_sums = sums - _class_sums(Z, codes[test], n_classes)
            shift = fold_centre - centre  # zero about the origin
            rest_scatter = scatter - Z.T @ Z - rest_sums.T @ shift - shift.T @ rest_sums
            rest_scatter += (shift.T * rest) @ shift
            rest_sums = rest_sums - rest[:, None] * shift
            fold_moments.append(
                cls(rest, rest_sums, rest_scatter, fold_4, classes=classes, centre=fold_centre)
            )
        return cls(
            counts, sums, scatter, fourth, classes=classes, centre=centre, folds=fold_moments
        )

    @classmethod
    def _centred_sums(cls, X, codes, centre, folds, fold_centres):
        """Sums, scatter and fourth moment of every row about ``centre``, block by block (no
        full-size copy), and each fold model's fourth moment: of its training rows about its
        own centre, ``||z - shift||^2 = ||z||^2 - 2 z.shift + ||shift||^2``."""
        n_classes, n_features = centre.shape
        n_folds = len(folds)
        in_fold = np.full(X.shape[0], -1)
        for f, test in enumerate(folds):
            in_fold[test] = f
        shifts = np.array([c - centre for c in fold_centres]).reshape(n_folds, *centre.shape)
        shift_sq = np.einsum("fkj,fkj->fk", shifts, shifts)
        one_product = n_folds * n_classes <= n_features  # z.shift of every fold and class at once
        sums, scatter = np.zeros_like(centre), np.zeros((n_features, n_features))
        fourth, fold_fourth = 0.0, np.zeros(n_folds)
        for sl in iter_slices(X.shape[0], cls._BLOCK_ROWS):
            Z, block_codes = X[sl] - centre[codes[sl]], codes[sl]
            sums += _class_sums(Z, block_codes, n_classes)
            scatter += Z.T @ Z
            sq = np.einsum("ij,ij->i", Z, Z)
            fourth += float(sq @ sq)
            if not n_folds:
                continue
            if one_product:
                proj = (Z @ shifts.reshape(-1, n_features).T).reshape(-1, n_folds, n_classes)
                proj = proj[np.arange(Z.shape[0]), :, block_codes]
            else:
                proj = np.stack(
                    [np.einsum("ij,ij->i", Z, shift[block_codes]) for shift in shifts], axis=1
                )
            sq_f = sq[:, None] - 2 * proj + shift_sq[:, block_codes].T  # (rows, folds)
            sq_f[in_fold[sl][:, None] == np.arange(n_folds)] = (
                0.0  # a fold's own rows: not its model's
            )
            fold_fourth += np.einsum("ij,ij->j", sq_f, sq_f)
        return sums, scatter, fourth, list(fold_fourth)

    @property
    def n_rows(self) -> int:
        """The number of rows summed."""
        return round(float(self.counts.sum()))

    @property
    def n_features(self) -> int:
        """The number of features."""
        return self.sums.shape[1]

    @property
    def means(self) -> np.ndarray:
        """The class means, shape (n_classes, n_features); NaN for a class without rows."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.centre + self.sums / self.counts[:, None]

    def _check_matches(self, classes, n_folds: int, n_features: int) -> None:
        if not _same_classes(self.classes, classes) or len(self.folds) != n_folds:
            raise ValueError(
                "GaussianMoments: about= must be moments of the same rows, with the same classes "
                f"and folds; it has classes {_names(self.classes)} and {len(self.folds)} "
                f"fold(s), these rows {_names(classes)} and {n_folds}."
            )
        if self.n_features != n_features:
            raise ValueError(
                f"GaussianMoments: about= has {self.n_features} features, X has {n_features}."
            )

    def __add__(self, other):
        if not isinstance(other, GaussianMoments):
            return NotImplemented
        if (
            not _same_classes(self.classes, other.classes)
            or self.centre.shape != other.centre.shape
            or not np.array_equal(self.centre, other.centre)
            or len(self.folds) != len(other.folds)
        ):
            raise ValueError(
                "GaussianMoments add only with the same classes, centre and number of folds: "
                "compute every block's with the same classes= (all of the data's), folds layout "
                "and about=."
            )
        fourth = None if self.fourth is None or other.fourth is None else self.fourth + other.fourth
        return GaussianMoments(
            self.counts + other.counts,
            self.sums + other.sums,
            self.scatter + other.scatter,
            fourth,
            classes=self.classes,
            centre=self.centre,
            folds=[a + b for a, b in zip(self.folds, other.folds)],
        )

    def __radd__(self, other):
        if isinstance(other, Integral) and other == 0:  # sum(parts) starts from 0
            return self
        return NotImplemented

    def __repr__(self) -> str:
        n_classes = "none" if self.classes is None else self.classes.size
        return (
            f"GaussianMoments(n_rows={self.n_rows}, n_features={self.n_features}, "
            f"classes={n_classes}, folds={len(self.folds)}, "
            f"fourth={'yes' if self.fourth is not None else 'no'})"
        )


def _same_classes(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.all(a == b))


def _names(classes) -> str:
    return "none" if classes is None else str(list(classes)[:10])


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
        outliers through. Measured on the :doc:`development suite </evidence/dev_suite>` (55
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
        Shuffles the ``offset_cv`` folds (and draws the calibration rows beyond 50,000). None
        shuffles them as ``random_state=0`` does: the model has no other randomness, so the
        same data give the same ``offset_`` at every fit, as scikit-learn's ``cv=5`` gives the
        same folds. Another int gives other folds; a ``RandomState`` instance new ones at
        every fit.

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
    GaussianMoments : The sums over rows the model is computed from, block by block
        (:meth:`fit_moments`); ``fit`` on a Dask array or dataframe adds them over its blocks
        (:func:`skood.distributed.fit_gaussian`).
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

    _input_dtype = np.float64
    _score_dtype = np.float64  # numpy float64 throughout (the Dask fit too)

    def fit(self, X, y=None):
        """Fit the Gaussian(s) on the inlier rows of ``X``.

        A Dask array or dataframe (``X`` or ``y``) is fitted where it lives, from the moments of
        its blocks: :func:`skood.distributed.fit_gaussian`, the same model and ``offset_`` to
        rounding.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            ``-1`` marks outlier rows (left out); other values are inlier class labels.

        Returns
        -------
        self : GaussianMahalanobis
        """
        if _is_dask_collection(X) or _is_dask_collection(y):
            from skood.distributed import fit_gaussian

            return fit_gaussian(self, X, y)
        return super().fit(X, y)

    def _fit_model(self, X, y, rng, X_calibration) -> None:
        """The model from the moments of the inlier rows (from the rows themselves for a
        covariance estimator object), and the models that score the calibration rows."""
        self._check_fit_size(X)
        classes = self.modelled_classes(None if y is None else np.unique(y))
        labels = None if classes is None else y
        calibration = self.calibration_folds(X.shape[0])  # draws from random_state, as rng
        if isinstance(self.covariance, str):
            models = self._fit_from_moments(X, labels, classes, calibration)
        else:
            models = self._fit_from_rows(X, labels, calibration)
        self._calibration_plan = (calibration, models)  # for _calibration_scores, then dropped

    def _fit_from_moments(self, X, labels, classes, calibration):
        """Set the model from :class:`GaussianMoments` of ``X``; return the calibration models.

        One pass: ``X^T X`` and the class sums, no copy of ``X``; each fold model's moments are
        the full ones less its fold's rows', so the folds cost only their rows (at most
        ``_MAX_CALIBRATION_ROWS`` in all). A second pass centres the rows block by block where
        :meth:`moments_suffice` says so.
        """
        folds = calibration if len(calibration) > 1 else ()
        moments = GaussianMoments.from_rows(X, labels, classes=classes, folds=folds)
        if not self.moments_suffice(moments):
            moments = GaussianMoments.from_rows(
                X, labels, classes=classes, folds=folds, about=moments
            )
        self._set_model(moments)
        return (self.fold_model(fold) for fold in moments.folds) if folds else [self]

    def _fit_from_rows(self, X, labels, calibration):
        """The model of a covariance estimator object, fitted on the class-centred rows."""
        _check_magnitude(X)
        n_classes = 1 if labels is None else np.unique(labels).size
        self._choose_covariance(X.shape[0], X.shape[1], n_classes)
        self._set_fitted(*self._rows_model(X, labels))
        if len(calibration) == 1:
            return [self]
        return (self._rows_fold_model(X, labels, test) for test in calibration)

    def _calibration_scores(self, X: np.ndarray) -> np.ndarray:
        """Out-of-fold scores: each calibration row's by the model fitted without its fold (by
        the model itself without ``offset_cv``), of at most ``_MAX_CALIBRATION_ROWS`` rows."""
        calibration, models = vars(self).pop("_calibration_plan")
        return np.concatenate(
            [model._score_samples(X[rows]) for rows, model in zip(calibration, models)]
        )

    # -- the model from moments: shared by fit and the Dask fit ---------------------------------
    #: The sufficient statistics this estimator is fitted from: a Dask fit computes them per
    #: block with ``moments_type.from_rows`` (skood.distributed imports nothing of this module).
    moments_type = GaussianMoments

    @fit_context(prefer_skip_nested_validation=True)
    def fit_moments(self, moments: GaussianMoments):
        """Fit the model from :class:`GaussianMoments` of the inlier rows, computed elsewhere.

        The code ``fit`` runs once it has the moments of ``X``: it resolves ``covariance``
        (``covariance_method_``), warns of too few rows as ``fit`` does, and sets ``means_``,
        ``covariance_``, ``whitening_``, ``log_det_``, ``classes_`` and ``n_features_in_``. It
        sets no threshold: call :meth:`calibrate_offset` with scores of inlier rows before
        ``predict``. ``fit`` uses the out-of-fold scores of the rows :meth:`calibration_folds`
        names, each fold's by :meth:`fold_model` of ``moments.folds[f]``.

        Parameters
        ----------
        moments : GaussianMoments
            Per class for a class-conditional model (``classes``), else without classes; about
            the class means for ``covariance="ledoit_wolf"`` (:meth:`moments_suffice`).

        Returns
        -------
        self : GaussianMahalanobis
            Fitted, without ``offset_``.

        Examples
        --------
        >>> import numpy as np
        >>> from skood.gaussian import GaussianMahalanobis, GaussianMoments
        >>> X = np.random.default_rng(0).normal(size=(500, 2))
        >>> det = GaussianMahalanobis().fit_moments(GaussianMoments.from_rows(X))
        >>> det.means_.shape, det.covariance_method_
        ((1, 2), 'empirical')
        """
        if not isinstance(moments, GaussianMoments):
            raise TypeError(f"fit_moments takes GaussianMoments, got {type(moments).__name__}")
        if not isinstance(self.covariance, str):
            raise ValueError(
                f"{type(self).__name__}: covariance={self.covariance!r} is fitted on the rows "
                "themselves, not on their moments: call fit, or name a covariance "
                f"({sorted(_COVARIANCES)})."
            )
        if moments.classes is None:
            self.modelled_classes(None)  # refuses class_conditional=True, as fit does
        elif self.class_conditional is False and np.count_nonzero(moments.counts) >= 2:
            raise ValueError(
                f"{type(self).__name__}: class_conditional=False, but the moments are per class "
                "(GaussianMoments.from_rows with y): compute them without y."
            )
        if moments.n_rows < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 inlier rows, got {moments.n_rows}."
            )
        for name in (
            "offset_",
            "calibration_scores_",
            "calibration_held_out_",
            "feature_names_in_",
        ):
            vars(self).pop(name, None)  # a threshold of an earlier fit would not fit this model
        self.n_features_in_ = moments.n_features
        self._set_model(moments)
        return self

    def moments_suffice(self, moments: GaussianMoments) -> bool:
        """Whether ``moments`` give this estimator's model to float64 precision.

        Moments about the origin (:meth:`GaussianMoments.from_rows` without ``about``) do,
        unless the class means lie more than 10 spreads from it (more than 2 of float64's 16
        digits of the scatter would cancel) or the covariance is Ledoit–Wolf, which reads the
        fourth moment about the class means. Then compute them again over the same rows,
        ``from_rows(..., about=moments)``: ``fit`` and the Dask fit do.

        Parameters
        ----------
        moments : GaussianMoments

        Returns
        -------
        bool
        """
        if isinstance(self.covariance, str) and self.covariance == "ledoit_wolf":
            if moments.fourth is None:
                return False
        _, _, delta, scatter, n = _about_means(moments)
        spread = np.maximum(np.diag(scatter) / n, np.finfo(np.float64).tiny)
        return bool(np.max(delta**2 / spread) <= self._MAX_MEAN_TO_SPREAD)

    def modelled_classes(self, labels):
        """The inlier classes a fit on ``labels`` models: ``class_conditional`` resolved.

        Parameters
        ----------
        labels : array-like or None
            The inlier labels of the training rows (those labelled ``-1`` left out), or None
            when there is no ``y``.

        Returns
        -------
        ndarray or None
            The sorted classes, or None for one Gaussian (``"auto"`` with a single label).
        """
        if labels is None:
            if self.class_conditional is True:
                raise ValueError(
                    "class_conditional=True needs inlier class labels in y; got y=None. Pass the "
                    "labels, or use class_conditional='auto' or False."
                )
            return None
        classes = np.unique(np.asarray(labels))
        if self.class_conditional is True or (
            self.class_conditional == "auto" and classes.size >= 2
        ):
            return classes
        return None

    def calibration_folds(self, n_rows: int) -> list[np.ndarray]:
        """The inlier rows whose scores set ``offset_``, grouped by the model that scores them.

        Every row up to ``_MAX_CALIBRATION_ROWS`` (50,000); beyond, that many drawn with
        ``random_state`` (None: as 0). With ``offset_cv``, one array per fold, shuffled with
        ``random_state``: fold ``f``'s rows are scored by the model fitted on every other row,
        :meth:`fold_model` of ``moments.folds[f]``. Without, a single array, scored by the
        model itself.

        Parameters
        ----------
        n_rows : int
            The number of inlier rows.

        Returns
        -------
        list of ndarray of int
            Sorted indices into the inlier rows (in their order).
        """
        # The fit itself draws nothing: a None seed drawing fresh folds would
        # make offset_ (and predict) differ between two identical fits.
        rng = check_random_state(0 if self.random_state is None else self.random_state)
        rows = np.arange(n_rows)
        if n_rows > self._MAX_CALIBRATION_ROWS:
            rows = np.sort(rng.choice(n_rows, self._MAX_CALIBRATION_ROWS, replace=False))
        if self.offset_cv is None or rows.size < 2:
            return [rows]
        kfold = KFold(min(self.offset_cv, rows.size), shuffle=True, random_state=rng)
        return [rows[test] for _, test in kfold.split(np.empty((rows.size, 0)))]

    def fold_model(self, moments: GaussianMoments) -> GaussianMahalanobis:
        """A copy of this fitted model, fitted on other moments: an ``offset_cv`` fold's model.

        It has the same parameters and ``covariance_method_`` (``"auto"`` stays resolved as for
        all the rows), and neither warns nor sets ``offset_``: its :meth:`score_samples` of the
        fold's rows are out-of-fold calibration scores.

        Parameters
        ----------
        moments : GaussianMoments
            Usually ``moments.folds[f]``.

        Returns
        -------
        GaussianMahalanobis
        """
        check_is_fitted(self)
        fold = self._fold_copy()
        fold._set_fitted(*fold._model_of(moments))
        return fold

    def _set_model(self, moments: GaussianMoments) -> None:
        self._choose_covariance(
            moments.n_rows, moments.n_features, int(np.count_nonzero(moments.counts))
        )
        self._set_fitted(*self._model_of(moments))

    def _model_of(self, moments: GaussianMoments):
        """``(classes, means, covariance)`` of the moments' rows, with ``covariance_method_``."""
        keep, means, _, scatter, n = _about_means(moments)
        if self.covariance_method_ == "ledoit_wolf" and moments.fourth is None:
            raise ValueError(
                f"{type(self).__name__}: covariance='ledoit_wolf' needs the fourth moment about "
                "the class means: GaussianMoments.from_rows(X, ..., about=moments), a second pass "
                "over the same rows."
            )
        covariance = self._covariance_from_moments(scatter, moments.fourth, n)
        classes = None
        if moments.classes is not None and (keep.sum() >= 2 or self.class_conditional is True):
            classes = moments.classes[keep]
        return classes, means, covariance

    def _set_fitted(self, classes, means, covariance) -> None:
        self.classes_, self.means_, self.covariance_ = classes, means, covariance
        self.whitening_, self.log_det_ = self._whiten(covariance)

    def _fold_copy(self) -> GaussianMahalanobis:
        fold = clone(self)
        fold.covariance_method_ = self.covariance_method_
        fold.n_features_in_ = self.n_features_in_
        return fold

    #: Beyond this many features, a covariance from fewer rows than features is refused: its
    #: d x d matrix and eigendecomposition cost minutes and gigabytes for a rank-n estimate.
    _MAX_WIDE_FEATURES = 4096
    #: At most this many rows (drawn at random beyond it) are scored to set ``offset_``: the
    #: 0.05-quantile of 50,000 scores is known to +-0.002 in probability (two standard errors),
    #: and scoring every row of a large X would cost more than the fit
    #: (:doc:`speed </evidence/speed>`).
    _MAX_CALIBRATION_ROWS = 50_000
    #: The Gram identity ``X^T X - sum_k n_k mu_k mu_k^T`` loses about log10(mu^2 / var) digits;
    #: beyond this ratio (2 digits of float64's 16) the moments are taken again about the means,
    #: the rows centred block by block, which costs about 1.4 times the product
    #: (:doc:`speed </evidence/speed>`).
    _MAX_MEAN_TO_SPREAD = 100.0

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

    def _rows_model(self, X: np.ndarray, labels, rows: np.ndarray | None = None):
        """``(classes, means, covariance)`` of ``X[rows]`` (all rows when None): the covariance
        estimator object is fitted on the class-centred rows."""
        X = X if rows is None else X[rows]  # the estimator needs the centred rows: a copy
        classes, codes = _class_codes(labels, None, X.shape[0])
        n_classes = 1 if classes is None else classes.size
        counts = np.bincount(codes, minlength=n_classes)
        means = _class_sums(X, codes, n_classes) / counts[:, None]
        cov_est = clone(self.covariance)
        if "assume_centered" in cov_est.get_params():
            cov_est.set_params(assume_centered=True)
        return classes, means, cov_est.fit(X - means[codes]).covariance_

    def _rows_fold_model(self, X: np.ndarray, labels, test: np.ndarray) -> GaussianMahalanobis:
        """:meth:`fold_model` for a covariance estimator object: fitted on every row but ``test``."""
        train = np.ones(X.shape[0], dtype=bool)
        train[test] = False
        train = np.flatnonzero(train)
        fold = self._fold_copy()
        fold._set_fitted(*self._rows_model(X, None if labels is None else labels[train], train))
        return fold

    def _whiten(self, covariance: np.ndarray) -> tuple[np.ndarray, float]:
        """The whitening matrix ``W`` (``W^T Sigma W = I``) and ``log det Sigma``, regularised."""
        eigval, eigvec = np.linalg.eigh(covariance + self.reg_covar * np.eye(covariance.shape[0]))
        eigval = np.maximum(eigval, max(self.reg_covar, np.finfo(np.float64).tiny))
        return eigvec / np.sqrt(eigval), float(np.sum(np.log(eigval)))

    def _covariance_from_moments(self, scatter: np.ndarray, fourth, n) -> np.ndarray:
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

    # -- scores ---------------------------------------------------------------------------------
    def _log_densities(self, X: np.ndarray) -> np.ndarray:
        # ||(x - mu_k) W||^2 = ||xW||^2 - 2 xW.muW_k + ||muW_k||^2: one matmul for all classes.
        xw = X @ self.whitening_
        mw = self.means_ @ self.whitening_
        sq = (
            np.einsum("ij,ij->i", xw, xw)[:, None] - 2.0 * xw @ mw.T + np.einsum("ij,ij->i", mw, mw)
        )
        np.maximum(sq, 0.0, out=sq)
        return -0.5 * (sq + self.log_det_ + X.shape[1] * _LOG_2PI)

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        """The class log-densities combined by ``aggregate``, ``inference_batch_size`` rows at a
        time."""
        out = np.empty(X.shape[0])
        for sl in iter_slices(X.shape[0], self.inference_batch_size):
            dens = self._log_densities(X[sl])
            if self.aggregate == "max":
                out[sl] = dens.max(axis=1)
            else:
                out[sl] = logsumexp(dens, axis=1) - math.log(dens.shape[1])
        return out

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
        return super().score_samples(X)

    def score_gradient(self, X) -> np.ndarray:
        """The gradient of ``score_samples`` with respect to each row, in closed form.

        With ``A = whitening_ @ whitening_.T`` the precision matrix, the gradient of
        ``log N(x; mu_k, Sigma)`` is ``-A (x - mu_k)``. ``aggregate="max"`` (and a single
        Gaussian) takes it at the class the row scores best under; ``"logsumexp"`` takes the
        average over the classes weighted by their posterior (the softmax of the class
        log-densities), ``-A (x - sum_k w_k mu_k)``. ``inference_batch_size`` rows at a time.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of float64, shape (n_samples, n_features)
        """
        X = self._check_fitted_and_validate(X)
        W = self.whitening_
        out = np.empty(X.shape, dtype=np.float64)
        for sl in iter_slices(X.shape[0], self.inference_batch_size):
            dens = self._log_densities(X[sl])  # (rows, classes)
            if self.aggregate == "max":
                weights = np.zeros_like(dens)
                weights[np.arange(dens.shape[0]), np.argmax(dens, axis=1)] = 1.0
            else:  # d/dx log mean_k N_k = sum_k softmax_k * d/dx log N_k
                weights = np.exp(dens - dens.max(axis=1, keepdims=True))
                weights /= weights.sum(axis=1, keepdims=True)
            out[sl] = -((X[sl] - weights @ self.means_) @ W) @ W.T
        return out

    def component_log_densities(self, X) -> np.ndarray:
        """``log N(x; mu_k, Sigma)`` for every row and component, shape (n_samples, n_components)."""
        return self._log_densities(self._check_fitted_and_validate(X))

    def mahalanobis(self, X) -> np.ndarray:
        """Squared Mahalanobis distance to the nearest class mean, shape (n_samples,)."""
        X = self._check_fitted_and_validate(X)
        dens = self._log_densities(X)
        return -2.0 * dens.max(axis=1) - self.log_det_ - X.shape[1] * _LOG_2PI
