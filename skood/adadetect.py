"""AdaDetect: novelty detection with a false discovery rate guarantee and a learned score.

Marandon, Lei, Mary and Roquain, "Adaptive novelty detection with false discovery rate
guarantee", Annals of Statistics 52(1), 157-183, 2024 (arXiv:2208.06685).

Split-conformal novelty detection (Bates et al. 2023, :class:`~skood.conformal.ConformalDetector`)
fixes its score on inliers alone: it can only find outliers in the directions that score happens
to watch. AdaDetect learns the score from the *test batch itself*. The inliers ("null training
sample") are split once into a training part ``T`` and a calibration part ``C``; for a batch
``B`` a classifier is trained to tell ``T`` (class 0) from the union ``C ∪ B`` (class 1), without
being told which rows of the union are calibration rows. The classifier's class-1 probability
approximates a monotone transform of the density ratio ``f_B / f_0``: large where the batch has
more mass than the inliers, i.e. exactly where its outliers lie.

Why it stays valid: the fitted score is a function of ``T`` and of the *unordered* set
``C ∪ B``. An inlier row of ``B`` and the rows of ``C`` are then exchangeable even after the
score was learned from them, so the conformal p-value of a test row (its rank among the
calibration scores) is valid, and Benjamini–Hochberg on the batch's p-values controls the false
discovery rate (the paper's Theorem 3.3). The adaptive variant estimates the share of inliers in
the batch with Storey's estimator and runs BH at ``alpha / pi0`` (the paper's Section 3.3).
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, clone, is_classifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted

from skood.base import (
    fit_context,
    split_labels,
    validate_numeric,
    warn_if_anomaly_labels,
)
from skood.conformal import (
    benjamini_hochberg,
    conformal_p_values,
    detector_scores,
    detector_tie_rtol,
    storey_null_proportion,
)

__all__ = ["AdaDetect"]


def _default_classifier() -> RandomForestClassifier:
    """The classifier ``estimator=None`` stands for (see :class:`AdaDetect`'s ``estimator``)."""
    return RandomForestClassifier(n_estimators=100, max_depth=5, n_jobs=1)


class AdaDetect(OutlierMixin, BaseEstimator):
    """AdaDetect: flag a batch's outliers at a false discovery rate, with a score learned per batch.

    Read more in the :ref:`User Guide <paper_adadetect>`.

    Marandon, Lei, Mary and Roquain (Annals of Statistics, 2024). ``fit`` takes inlier rows
    only (the paper's "null training sample") and splits them once, at random, into a training
    part and a calibration part. Each call of :meth:`predict`, :meth:`score_samples` or
    :meth:`detect` on a batch ``X`` then

    1. fits a fresh clone of ``estimator`` to tell the training part (class 0) from the
       calibration rows *and* the batch together (class 1), the union passed as a set (sorted,
       then shuffled with the training part) so that the classifier cannot know which of its
       class-1 rows are calibration rows;
    2. scores the calibration rows and the batch with it, and gives every batch row its conformal
       p-value, ``(1 + #{calibration rows scored at least as abnormal}) / (n_calibration + 1)``
       (:func:`skood.conformal.conformal_p_values`; higher = more normal);
    3. flags the Benjamini–Hochberg discoveries of the batch at level ``alpha`` (with
       ``adaptive=True``, at ``alpha / pi0`` with :func:`~skood.conformal.storey_null_proportion`'s ``pi0``).

    **Transductive**: a row's p-value and flag depend on the whole batch it comes in (the score is
    learned from it), so scoring rows one at a time, or in other batches, gives other answers; and
    every call fits a classifier (about as costly as one ``fit`` of ``estimator`` on
    ``n_train + n_calibration + len(X)`` rows). The same batch always gives the same answer
    (the classifier's seed and the shuffle are fixed at ``fit``).

    **Guarantee** (the paper's Theorems 3.3 and 3.7): if the batch's inlier rows are exchangeable
    with the calibration rows (drawn from the same distribution as ``fit``'s rows, independently),
    the expected share of inliers among the flagged rows is at most ``alpha`` (in fact
    ``alpha m0 / m`` without ``adaptive``), in expectation over the fit rows, the split and the
    batch, for *any* classifier and any outliers. One batch's realised share can exceed ``alpha``.
    Power depends on the classifier and on how many outliers the batch holds: the score is learned
    from them, so a batch with very few outliers gains little over a one-class score.

    Parameters
    ----------
    estimator : estimator or None, default=None
        What learns the score. Either

        * a **classifier** (``is_classifier``; a ``Pipeline`` ending in one is fine), with
          ``predict_proba`` or ``decision_function``: the paper's AdaDetect, trained on class 0
          (training part) against class 1 (calibration rows and batch); its class-1 output is
          the novelty score;
        * a **one-class detector** (skood's, scikit-learn's ``IsolationForest`` /
          ``KernelDensity``, PyOD's: anything with ``score_samples`` or ``decision_function``):
          the paper's density-ratio form (Section 4.1, "AdaDetect with density estimation"). One
          clone is fitted on the training part, one on the calibration rows and the batch
          together, and a row's score is the difference of their scores (higher = more normal,
          as every skood score). For log-densities (``KernelDensity``,
          :class:`~skood.GaussianMahalanobis`, flows) that is ``log f0 - log f_mix``, the
          paper's likelihood ratio; for other scores it is a heuristic, still valid (the FDR
          guarantee holds for any score built this way), maybe less powerful. A detector fitted
          on the training part *alone* is the non-adaptive split-conformal baseline: use
          :class:`~skood.conformal.ConformalDetector` with ``fdr=True`` for that.

        ``None`` is ``RandomForestClassifier(n_estimators=100, max_depth=5)``: the paper's
        classifier family (a forest of shallow trees), measured against deeper or leaf-limited
        forests, ``HistGradientBoostingClassifier`` and ``LogisticRegression``
        (``benchmarks/conformal/adadetect.md``): the most powerful of them on all three settings
        there (power 0.76 / 0.33 / 0.54 against at most 0.54 / 0.17 / 0.38 for the others),
        about 0.2 s a batch on one core, and needing no tuning. Its depth keeps the forest from
        memorising its class-1 rows: a forest grown to pure leaves scores every row it was
        trained on (calibration rows, the batch's inliers *and* its outliers) as class 1 and
        loses the power, though not the validity. An estimator whose
        ``random_state`` (or a nested one) is ``None`` gets one drawn from this
        ``random_state``.
    alpha : float in (0, 1), default=0.1
        The false discovery rate. May be changed with ``set_params`` after ``fit`` (nothing in the
        fit depends on it, as long as ``n_calibration_ + 1 >= 1 / alpha``).
    adaptive : bool, default=False
        Adaptive AdaDetect: BH at level ``alpha / pi0``, ``pi0`` estimated from the batch's
        p-values by :func:`~skood.conformal.storey_null_proportion` (the paper's Storey variant, not capped at 1). More discoveries when
        many rows of the batch are outliers; as valid. Changeable after ``fit``.
    storey_threshold : float in (0, 1), default=0.5
        Storey's ``lambda`` for ``adaptive``; the paper uses 1/2. Changeable after ``fit``.
    calibration_fraction : float in (0, 1), default=0.3
        The share of ``fit``'s inlier rows used as calibration rows; the rest train the class-0
        side. Measured (``benchmarks/conformal/adadetect.md``, 600 inliers, batches of 300 with
        60 outliers, 40 batches each): 0.3 gave power 0.76 / 0.33 / 0.54 on the synthetic /
        Cardiotocography / PageBlocks settings, against 0.68 / 0.18 / 0.43 for 0.5 (the
        authors' code's split), 0.74 / 0.30 / 0.51 for 0.2 and 0.29 / 0.08 / 0.31 for 0.7, all
        with FDR below 0.1. Fewer calibration rows leave more inliers to learn from and dilute
        the batch's outliers less on the class-1 side, but make
        the smallest p-value, ``1 / (n_calibration + 1)``, larger: BH flags a lone outlier in a
        batch of ``m`` only if ``n_calibration + 1 >= m / alpha``. ``fit`` refuses a split that
        leaves fewer than ``ceil(1 / alpha) - 1`` calibration rows (no p-value could reach
        ``alpha``).
    random_state : int, RandomState instance or None, default=None
        The split, the shuffle of each batch's class-1 rows and the classifier's seed. An int
        gives the same flags and p-values for the same batch, every time and after pickling or
        :func:`skood.save`.

    Attributes
    ----------
    X_train_ : ndarray of shape (n_train, n_features)
        The training part of the inliers (class 0 of every batch's classifier).
    X_calibration_ : ndarray of shape (n_calibration, n_features)
        The calibration part.
    n_calibration_ : int
        Its number of rows, ``n_calibration``.
    batch_seed_ : int
        Drawn from ``random_state`` at ``fit``: the seed of every batch's classifier and
        permutation, so that the same batch always gets the same answer.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``fit`` was given a DataFrame with string column names.

    See Also
    --------
    skood.conformal.ConformalDetector : split-conformal p-values with a score fixed on inliers,
        not transductive; ``fdr=True`` is the non-adaptive baseline of the paper.

    Notes
    -----
    There is no ``decision_function`` or ``offset_``: BH's threshold on the p-values depends on the
    batch, so no fixed offset turns :meth:`score_samples` into the flags. ``fit_predict`` (from
    ``OutlierMixin``) scores the fit's own rows, which are inliers by assumption: it is
    meaningless here.

    References
    ----------
    A. Marandon, L. Lei, D. Mary and E. Roquain, "Adaptive novelty detection with false discovery
    rate guarantee", Ann. Statist. 52(1), 157-183, 2024. https://arxiv.org/abs/2208.06685

    Examples
    --------
    >>> import numpy as np
    >>> from skood.adadetect import AdaDetect
    >>> rng = np.random.default_rng(0)
    >>> inliers = rng.normal(size=(1000, 5))
    >>> shifted = rng.normal(size=(50, 5)) + [3.0, 0.0, 0.0, 0.0, 0.0]  # 50 outliers
    >>> batch = np.r_[rng.normal(size=(150, 5)), shifted]
    >>> det = AdaDetect(alpha=0.1, random_state=0).fit(inliers)
    >>> flags = det.predict(batch)  # one classifier fit, on this batch
    >>> int((flags[150:] == -1).sum()), int((flags[:150] == -1).sum())  # outliers, inliers flagged
    (30, 2)
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"]), None],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "adaptive": ["boolean"],
        "storey_threshold": [Interval(Real, 0, 1, closed="neither")],
        "calibration_fraction": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        alpha=0.1,
        adaptive=False,
        storey_threshold=0.5,
        calibration_fraction=0.3,
        random_state=None,
    ):
        self.estimator = estimator
        self.alpha = alpha
        self.adaptive = adaptive
        self.storey_threshold = storey_threshold
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state

    # -- fitting ---------------------------------------------------------------------------------
    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Store the inliers and split them into a training and a calibration part.

        Nothing is trained here: the classifier is learned per batch, from the batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inlier rows (the paper's null training sample).
        y : array-like of shape (n_samples,), default=None
            skood's label convention: rows labelled ``-1`` (known outliers) are left out; every
            other row is an inlier, whatever its label.

        Returns
        -------
        self : AdaDetect
        """
        name = type(self).__name__
        X = validate_numeric(self, X, reset=True, dtype=np.float64)
        if y is not None:
            warn_if_anomaly_labels(y)
        inliers, _ = split_labels(y, X.shape[0], name)
        X = X[inliers]
        n = X.shape[0]
        n_cal = round(self.calibration_fraction * n)
        need = math.ceil(1.0 / self.alpha) - 1  # smallest p-value 1 / (n_cal + 1) <= alpha
        if n_cal < max(need, 1) or n - n_cal < 1:
            raise ValueError(
                f"{name} got n_samples={n} inlier row(s); with calibration_fraction={self.calibration_fraction} "
                f"give {n_cal} calibration and {n - n_cal} training row(s). The smallest p-value "
                f"is 1 / (n_calibration + 1), so alpha={self.alpha} needs at least {max(need, 1)} "
                "calibration rows, and the classifier needs at least one training row. Give at "
                f"least {math.ceil(max(need, 1) / self.calibration_fraction) + 1} inlier rows, or "
                "change calibration_fraction or alpha."
            )
        rng = check_random_state(self.random_state)
        order = rng.permutation(n)
        self.X_calibration_ = X[np.sort(order[:n_cal])]
        self.X_train_ = X[np.sort(order[n_cal:])]
        self.n_calibration_ = int(n_cal)
        # One seed for every batch's shuffle and classifier: the same batch, the same answer.
        self.batch_seed_ = int(rng.randint(np.iinfo(np.int32).max))
        return self

    # -- the per-batch test ----------------------------------------------------------------------
    def detect(self, X) -> Bunch:
        """Run AdaDetect on the batch ``X``: one classifier fit, the p-values and the flags.

        :meth:`predict` returns its flags and :meth:`score_samples` its p-values, each at the
        cost of one classifier fit; call it directly to get both from a single fit.

        Parameters
        ----------
        X : array-like of shape (m, n_features)
            The batch, at least one row.

        Returns
        -------
        Bunch
            ``p_values`` (ndarray of float64, shape (m,), higher = more normal), ``outlier``
            (ndarray of bool, BH's discoveries), ``null_proportion`` (Storey's ``pi0`` with
            ``adaptive``, else 1.0) and ``level`` (the level BH ran at, ``alpha / pi0``).
        """
        self._check_level()
        p_values = self._p_values(X)
        pi0 = storey_null_proportion(p_values, self.storey_threshold) if self.adaptive else 1.0
        # BH at alpha / pi0; pi0 may exceed 1 (then below alpha), which is what keeps the FDR of
        # batches with few outliers (see storey_null_proportion).
        outlier = benjamini_hochberg(p_values, self.alpha, null_proportion=pi0)
        level = self.alpha / pi0
        return Bunch(p_values=p_values, outlier=outlier, null_proportion=pi0, level=level)

    def predict(self, X) -> np.ndarray:
        """-1 for the rows of the batch flagged at false discovery rate ``alpha``, +1 else.

        Parameters
        ----------
        X : array-like of shape (m, n_features)

        Returns
        -------
        ndarray of int, shape (m,)
        """
        return np.where(self.detect(X).outlier, -1, 1)

    def score_samples(self, X) -> np.ndarray:
        """The batch's AdaDetect conformal p-values: higher = more normal, in ``(0, 1]``.

        They depend on the whole batch (the score is learned from it). A batch row's p-value is
        ``(1 + #{i : S_i <= s(x)}) / (n_calibration_ + 1)`` with ``s`` minus the classifier's
        class-1 output, ``S_i`` that of calibration row ``i``.

        Parameters
        ----------
        X : array-like of shape (m, n_features)

        Returns
        -------
        ndarray of float64, shape (m,)
        """
        check_is_fitted(self)
        return self._p_values(X)

    # -- internals -------------------------------------------------------------------------------
    def _check_level(self) -> None:
        """Validate what ``detect`` reads that may change after ``fit``, and ``alpha``'s reach."""
        check_is_fitted(self)
        names = ("alpha", "adaptive", "storey_threshold")
        validate_parameter_constraints(
            {k: self._parameter_constraints[k] for k in names},
            {k: getattr(self, k) for k in names},
            caller_name=type(self).__name__,
        )
        smallest = 1.0 / (self.n_calibration_ + 1)
        if smallest > self.alpha:
            raise ValueError(
                f"{type(self).__name__}: with {self.n_calibration_} calibration rows the smallest "
                f"p-value is {smallest:.4g}, so alpha={self.alpha} can never be reached. Fit "
                "again with more inlier rows, or raise alpha."
            )

    def _p_values(self, X) -> np.ndarray:
        X = validate_numeric(self, X, reset=False, dtype=np.float64)
        if X.shape[0] == 0:  # validate_data refuses it already; kept for a clear contract
            raise ValueError(f"{type(self).__name__}: the batch X is empty.")
        calibration, batch, rtol = self._batch_scores(X)
        return conformal_p_values(calibration, batch, rtol=rtol)

    def _learner(self):
        return _default_classifier() if self.estimator is None else self.estimator

    def _batch_scores(self, X) -> tuple[np.ndarray, np.ndarray, float | None]:
        """Scores (higher = more normal) of the calibration rows and of the batch, one fit, and
        the relative tolerance within which two of them tie."""
        rng = np.random.RandomState(self.batch_seed_)
        learner = _seeded(clone(self._learner()), rng)
        mixed = np.vstack([self.X_calibration_, X])  # class 1: calibration rows and the batch
        n_cal = self.n_calibration_
        # The learner sees class 1 as a *set*: its rows sorted (lexicographically), then the whole
        # training set permuted by a permutation fixed at fit. The fitted score is then a function
        # of the training part and of the unordered union only, as the paper's guarantee needs:
        # a learner that depends on row order (a forest's bootstrap draws rows by position, SGD
        # visits them in order) cannot tell calibration rows (else always first) from the
        # batch's. It also makes the answer independent of the order of the batch's rows.
        canonical = mixed[np.lexsort(mixed.T[::-1])] if mixed.shape[1] else mixed
        rtol = None  # a classifier's float64 probabilities: conformal_p_values' default
        if is_classifier(learner):
            X_fit = np.vstack([self.X_train_, canonical])
            y_fit = np.r_[np.zeros(len(self.X_train_), dtype=int), np.ones(len(mixed), dtype=int)]
            order = rng.permutation(len(y_fit))
            learner.fit(X_fit[order], y_fit[order])
            scores = -_class1_output(learner, mixed)  # higher = more normal
        else:
            null_model = learner
            mix_model = _seeded(clone(self._learner()), rng)
            null_model.fit(self.X_train_)
            mix_model.fit(canonical[rng.permutation(len(canonical))])
            null_scores = detector_scores(null_model, mixed)
            mix_scores = detector_scores(mix_model, mixed)
            scores = null_scores.astype(np.float64) - mix_scores
            # Ties at the precision the detectors computed in (a float32 network's scores move
            # by ~1e-7 with the batch they are computed in; that must not move a p-value).
            rtol = max(
                detector_tie_rtol(null_model, null_scores), detector_tie_rtol(mix_model, mix_scores)
            )
        scores = np.asarray(scores, dtype=np.float64)
        if not np.all(np.isfinite(scores)):
            raise ValueError(
                f"{type(self).__name__}: the learned score is not finite for some rows (the "
                f"estimator {type(learner).__name__} returned NaN or inf), so no p-value can be "
                "computed."
            )
        return scores[:n_cal], scores[n_cal:], rtol

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.allow_nan = False
        return tags


def _seeded(estimator, rng: np.random.RandomState):
    """``estimator`` with every ``random_state`` parameter left at None set from ``rng``."""
    params = estimator.get_params(deep=True)
    seeds = {
        key: int(rng.randint(np.iinfo(np.int32).max))
        for key in sorted(params)
        if (key == "random_state" or key.endswith("__random_state")) and params[key] is None
    }
    return estimator.set_params(**seeds) if seeds else estimator


def _class1_output(classifier, X) -> np.ndarray:
    """The classifier's output for class 1 (the batch side): larger = more novel."""
    if hasattr(classifier, "predict_proba"):
        proba = classifier.predict_proba(X)
        return proba[:, list(classifier.classes_).index(1)]
    if hasattr(classifier, "decision_function"):  # binary: positive means classes_[1] == 1
        return np.asarray(classifier.decision_function(X), dtype=np.float64)
    raise TypeError(
        f"AdaDetect: the classifier {type(classifier).__name__} has neither predict_proba nor "
        "decision_function, so it gives no score."
    )
