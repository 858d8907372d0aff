"""EnsembleDetector: detectors on different scales, combined through their calibration scores."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import check_is_fitted

from skood.base import BaseDetector, finite_scores

__all__ = ["EnsembleDetector", "default_members"]


def default_members() -> list[tuple[str, object]]:
    """The members of ``EnsembleDetector()``: a Gaussian and the nearest-neighbour distance.

    Chosen on the :doc:`development suite </evidence/dev_suite>` (21 tables, 30 sets of
    pretrained features, 4 small tables, weighted equally by group, 3 seeds) among the
    Gaussian's covariances, KNN's ``k`` and aggregation, the mean-NLL flow and the VAE, in
    subsets of two to four, by either ``combine`` rule. The Gaussian sees rows far out in
    unusual directions, the nearest neighbour rows far from every training row; adding the flow
    or the VAE gained no more than 0.06 AUROC points at 50 times the fit time. ``k = 1``
    scored highest (88.75 group-equal, against 88.57 at ``k = 2``) where the training rows are
    clean, as in skood's novelty setting; when they hold anomalies a single close copy hides
    an anomaly from it, so pass ``[("gaussian", GaussianMahalanobis()), ("knn",
    KNNDetector())]`` (``k = 5``) for such data.
    """
    from skood.gaussian import GaussianMahalanobis
    from skood.knn import KNNDetector

    return [("gaussian", GaussianMahalanobis()), ("knn", KNNDetector(n_neighbors=1))]


def _fit_member(estimator, X, y):
    with warnings.catch_warnings():
        # The ensemble has said it already (skood.base.warn_if_anomaly_labels), once.
        warnings.filterwarnings("ignore", message="y holds only the values 0 and 1")
        return estimator.fit(X) if y is None else estimator.fit(X, y)


class EnsembleDetector(_BaseComposition, BaseDetector):
    """The mean of its members' scores, each first put on the scale of its calibration scores.

    A Gaussian log-density, a negated distance and a PyOD score live on unrelated scales, so a
    plain sum is decided by whichever has the widest spread. Every skood detector keeps the scores
    of inlier rows it did not train on (``calibration_scores_``, the rows behind its ``offset_``);
    each member's score is standardised by those (``combine="zscore"``: minus their median, over
    their interquartile range in standard-normal units) or turned into a conformal p-value
    against them (``combine="pvalue"``: the mean log p-value). No test row is looked at. A member
    without calibration scores (an sklearn or PyOD detector) is standardised by its scores on the
    ensemble's held-out rows instead.

    ``offset_`` comes from the combined scores of ``validation_fraction`` of the inlier rows,
    held out of every member's training. When every member standardises by its own calibration
    scores these rows are untouched by the whole model (``calibration_held_out_`` is True and
    :class:`skood.ConformalDetector` reuses them); otherwise they also set a member's scale.

    Parameters
    ----------
    estimators : list of (str, estimator) or None, default=None
        The members, by name (``set_params(knn__n_neighbors=10)`` reaches into one). Each needs
        ``fit`` and ``score_samples`` with higher = more normal (skood's convention;
        :class:`skood.registry.PyODAdapter` wraps a PyOD model). None: :func:`default_members`.
    combine : {"zscore", "pvalue"}, default="zscore"
        How a member's score is put on a common scale (see above).
    validation_fraction : float in (0, 1), default=0.1
        Share of the inlier rows held out of the members' training to set ``offset_``.
    contamination : float in (0, 0.5] or "auto", default=0.05
        Share of the held-out inliers below ``offset_`` ("auto": 0.1).
    n_jobs : int or None, default=None
        Members fitted in parallel by joblib (-1: every core; under
        ``joblib.parallel_backend("dask")``, on a Dask cluster). Each member's result does not
        depend on it: seeds are drawn before the members are dispatched.
    random_state : int, RandomState or None, default=None
        Draws the held-out rows, and the seed of every member whose ``random_state`` is None.

    Attributes
    ----------
    estimators_ : list of estimators
        The fitted members, in the order of ``estimators``.
    member_names_ : list of str
        Their names.
    named_estimators_ : Bunch
        The fitted members by name.
    location_, scale_ : ndarray of shape (n_members,)
        Each member's median calibration score and interquartile range / 1.349.
    reference_scores_ : list of ndarray
        Each member's sorted calibration scores (what ``combine="pvalue"`` ranks against).
    offset_ : float
    calibration_scores_ : ndarray
        The sorted combined scores of the held-out rows.
    calibration_held_out_ : bool
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of str
        Names of features seen during ``fit``, when ``X`` has string column names.

    See Also
    --------
    skood.KNNDetector, skood.GaussianMahalanobis, skood.QuantileFlowDetector

    References
    ----------
    .. [1] C. C. Aggarwal and S. Sathe, "Theoretical foundations and algorithms for outlier
       ensembles", ACM SIGKDD Explorations 17(1), 2015 (standardising members before combining).
    .. [2] S. Bates, E. Candès, L. Lei, Y. Romano and M. Sesia, "Testing for outliers with
       conformal p-values", Annals of Statistics 51(1), 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from skood import EnsembleDetector, GaussianMahalanobis, KNNDetector
    >>> X = np.random.RandomState(0).normal(size=(300, 3))
    >>> det = EnsembleDetector(
    ...     [("gaussian", GaussianMahalanobis()), ("knn", KNNDetector())], random_state=0
    ... ).fit(X)
    >>> det.predict([[0.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    array([ 1, -1])
    """

    _scoring_params = ("combine",)

    _parameter_constraints: dict = {
        **BaseDetector._parameter_constraints,
        "estimators": [list, None],
        "combine": [StrOptions({"zscore", "pvalue"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimators=None,
        *,
        combine="zscore",
        validation_fraction=0.1,
        contamination=0.05,
        n_jobs=None,
        random_state=None,
    ):
        self.estimators = estimators
        self.combine = combine
        self.validation_fraction = validation_fraction
        self.contamination = contamination
        self.n_jobs = n_jobs
        self.random_state = random_state

    # get_params / set_params reach into the members by name, as in sklearn's VotingClassifier.
    def get_params(self, deep=True):
        return self._get_params("estimators", deep=deep)

    def set_params(self, **params):
        self._set_params("estimators", **params)
        return self

    def _members(self) -> list[tuple[str, object]]:
        members = default_members() if self.estimators is None else self.estimators
        if not members:
            raise ValueError("EnsembleDetector needs at least one member in estimators.")
        for item in members:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise ValueError(
                    f"estimators takes (name, estimator) pairs, as sklearn's VotingClassifier "
                    f"does; got {item!r}."
                )
        names = [name for name, _ in members]
        self._validate_names(names)  # unique, no "__", no clash with a parameter
        for name, est in members:
            if not (hasattr(est, "fit") and hasattr(est, "score_samples")):
                raise TypeError(
                    f"Member {name!r} ({type(est).__name__}) has no fit / score_samples. Give "
                    "detectors whose score_samples is higher for more normal rows; wrap a PyOD "
                    "model in skood.registry.PyODAdapter."
                )
        return members

    _input_dtype = np.float64
    _trains_on_outliers = True  # members leave the -1 rows out, or use them as exposure

    def _validate_training_data(self, X, y):
        self._members()  # a bad member list fails before any work
        return super()._validate_training_data(X, y)

    def _fit_model(self, X, y, rng, X_calibration) -> None:
        """Fit a clone of every member (in parallel), each seeded from ``rng`` when unseeded."""
        members = self._members()
        clones = [self._seeded(clone(est), rng) for _, est in members]
        self.estimators_ = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_member)(est, X, y) for est in clones
        )
        self.member_names_ = [name for name, _ in members]

    def _calibration_scores(self, X: np.ndarray) -> np.ndarray:
        """Set each member's reference scores and scale, then combine the members' scores of
        the held-out rows ``X``."""
        held_scores = [self._member_scores(e, X) for e in self.estimators_]
        own = [getattr(e, "calibration_scores_", None) for e in self.estimators_]
        self.reference_scores_ = [
            np.sort(held if ref is None else np.asarray(ref, np.float64))
            for ref, held in zip(own, held_scores)
        ]
        self.location_, self.scale_ = self._robust_scale(self.reference_scores_)
        return self._combine_members(np.column_stack(held_scores))

    def _calibration_held_out(self, rows_held_out: bool) -> bool:
        # A member without calibration scores of its own has its scale fitted on these rows.
        return all(hasattr(e, "calibration_scores_") for e in self.estimators_)

    @property
    def named_estimators_(self) -> Bunch:
        """The fitted members by name."""
        check_is_fitted(self)
        return Bunch(**dict(zip(self.member_names_, self.estimators_)))

    @staticmethod
    def _seeded(estimator, rng):
        """Give every unset ``random_state`` of ``estimator`` (members' members too) a seed."""
        unset = {
            key: int(rng.randint(np.iinfo(np.int32).max))
            for key, value in sorted(estimator.get_params(deep=True).items())
            if (key == "random_state" or key.endswith("__random_state")) and value is None
        }
        return estimator.set_params(**unset) if unset else estimator

    @staticmethod
    def _robust_scale(references):
        location = np.array([np.median(r) for r in references])
        spread = np.array([np.subtract(*np.quantile(r, [0.75, 0.25])) / 1.349 for r in references])
        # A member whose calibration scores are (nearly) all equal has no spread to divide by:
        # its standard deviation, then one float64 step at its location, stand in.
        std = np.array([np.std(r) for r in references])
        tiny = np.finfo(np.float64).eps * np.maximum(1.0, np.abs(location))
        scale = np.where(spread > tiny, spread, np.where(std > tiny, std, tiny))
        return location, scale

    def _combine_members(self, scores: np.ndarray) -> np.ndarray:
        """The ensemble score of each row from its members' scores, shape (n, n_members)."""
        if self.combine == "zscore":
            return ((scores - self.location_) / self.scale_).mean(axis=1)
        log_p = np.empty_like(scores)
        for j, ref in enumerate(self.reference_scores_):
            at_or_below = np.searchsorted(ref, scores[:, j], side="right")
            log_p[:, j] = np.log1p(at_or_below) - np.log(ref.size + 1)
        return log_p.mean(axis=1)

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        """The combined score of validated rows (see ``combine``)."""
        scores = np.column_stack([self._member_scores(e, X) for e in self.estimators_])
        return self._combine_members(scores)

    @staticmethod
    def _member_scores(estimator, X) -> np.ndarray:
        # skood's convention for every score: NaN or -inf is the most abnormal (an sklearn or
        # PyOD member may return them), +inf the most normal; see skood.base.finite_scores.
        return finite_scores(estimator.score_samples(X))
