"""Stage 1 + gate + classify as one sklearn classifier: the QuantOD framework.

Taghikhah et al. (AAAI 2024) train a classifier on the inlier classes, freeze it, fit an outlier
detector on its penultimate features, and at inference reject inputs whose detector score falls
below a threshold tau, classifying the rest. :class:`OpenSetClassifier` is that pipeline: any
skood detector (a quantile flow, a class-conditional Gaussian, ...) or one of the paper's baselines
computed from the classifier's own logits (maximum softmax probability, energy) is the gate.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from scipy.special import logsumexp, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted

from skood.base import (
    LogitClassifierMixin,
    finite_scores,
    fit_context,
    open_set_labels,
    split_holdout,
    split_labels,
    validate_numeric,
)
from skood.features import ClassifierFeatures

__all__ = ["OpenSetClassifier"]

_LOGIT_GATES = ("msp", "energy")


class OpenSetClassifier(LogitClassifierMixin, ClassifierMixin, BaseEstimator):
    """A classifier that rejects what it was not trained on (QuantOD's two-stage framework).

    ``fit(X, y)`` holds out a stratified ``validation_fraction`` of the inlier rows, trains the
    feature extractor's classifier on the rest (stage 1), fits the detector on their penultimate
    features, and sets the gate's threshold ``threshold_`` so that a fraction ``tpr`` of the
    held-out inliers passes it (the paper's TPR-95 operating point). At inference an input whose
    gate score falls below ``threshold_`` is rejected (label ``-1``); the others get the
    classifier's class.

    Parameters
    ----------
    features : ClassifierFeatures or None, default=None
        Stage 1: an unfitted :class:`skood.ClassifierFeatures` (or any estimator with ``fit(X, y)``,
        ``transform_with_logits`` and ``classes_``); it is cloned. None uses
        ``ClassifierFeatures(random_state=random_state)``.
    detector : {"msp", "energy"} or estimator, default="msp"
        The gate. ``"msp"``: the maximum softmax probability (Hendrycks & Gimpel, 2017).
        ``"energy"``: the negative free energy ``T * logsumexp(logits / T)`` (Liu et al., 2020).
        An estimator (any skood detector, e.g. :class:`skood.QuantileFlowDetector` or
        class-conditional :class:`skood.GaussianMahalanobis` for the Mahalanobis / GEM baselines)
        is cloned and fitted on the features of the training rows with their labels; its
        ``score_samples`` is the gate score and its own ``offset_`` is not used.
    tpr : float in (0, 1], default=0.95
        Fraction of held-out inliers that the gate accepts; ``threshold_`` is their
        ``(1 - tpr)``-quantile score.
    validation_fraction : float in [0, 1), default=0.2
        Inlier rows held out (per class) from both stages to set ``threshold_``. With 0 the
        threshold is set on the training rows, which the stages have seen, so it accepts more
        new inliers than ``tpr`` and more outliers too.
    temperature : float > 0, default=1.0
        Softmax / energy temperature for the ``"msp"`` and ``"energy"`` gates.
    random_state : int, RandomState instance or None, default=None
        Seeds the held-out split and, when ``features`` is None, stage 1.

    Attributes
    ----------
    features_ : ClassifierFeatures
        The fitted stage 1.
    detector_ : estimator or str
        The fitted gate, or ``"msp"`` / ``"energy"``.
    classes_ : ndarray
        The inlier classes (never ``-1``).
    threshold_ : float
        Gate score at which inputs are rejected (below it).
    offset_ : float
        Same as ``threshold_``: ``outlier_decision_function = score_samples - offset_``.
    n_features_in_ : int
    feature_names_in_ : ndarray

    See Also
    --------
    skood.ClassifierFeatures : stage 1 on its own, for a ``Pipeline`` with any detector.

    Notes
    -----
    sklearn's classifier contract fixes what ``decision_function`` means (per-class confidences,
    consistent with ``predict_proba`` and with what scorers such as ``roc_auc`` read), so it
    returns the classifier's logits; the gate's shifted score is :meth:`outlier_decision_function`.

    ``predict`` returns open-set labels: a class from ``classes_`` or ``-1`` (``"-1"`` when the
    classes are strings). ``score(X, y)`` is therefore the open-set accuracy when ``y`` marks the
    outliers with ``-1``: a rejected outlier counts as correct. :meth:`predict_closed_set` is the
    classifier alone, :meth:`predict_outlier` the gate alone (+1 / -1), and :meth:`predict_open_set`
    an alias of ``predict`` shared with :class:`skood.ICEClassifier`.

    References
    ----------
    Taghikhah, Kumar, Segvic, Eslami, Gumhold. "Quantile-based Maximum Likelihood Training for
    Outlier Detection", AAAI 2024.

    Examples
    --------
    >>> from skood import ClassifierFeatures, OpenSetClassifier
    >>> from skood.datasets import load_digits_ood
    >>> X, y = load_digits_ood(inlier_classes=range(6))  # y == -1 for digits 6-9
    >>> clf = OpenSetClassifier(
    ...     ClassifierFeatures(image_shape=(1, 8, 8), max_epochs=20, random_state=0),
    ...     detector="energy", random_state=0,
    ... ).fit(X[y != -1] / 16.0, y[y != -1])
    >>> labels = clf.predict(X / 16.0)  # a digit in 0-5, or -1 when rejected
    >>> sorted(set(labels.tolist()))
    [-1, 0, 1, 2, 3, 4, 5]
    >>> bool((labels[y == -1] == -1).mean() > 0.5)  # most unseen digits are rejected
    True
    """

    _parameter_constraints: dict = {
        "features": [HasMethods(["fit", "transform_with_logits"]), None],
        "detector": [StrOptions(set(_LOGIT_GATES)), HasMethods(["fit", "score_samples"])],
        "tpr": [Interval(Real, 0, 1, closed="right")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        features=None,
        detector="msp",
        *,
        tpr=0.95,
        validation_fraction=0.2,
        temperature=1.0,
        random_state=None,
    ):
        self.features = features
        self.detector = detector
        self.tpr = tpr
        self.validation_fraction = validation_fraction
        self.temperature = temperature
        self.random_state = random_state

    # -- fitting -------------------------------------------------------------------------------
    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Train stage 1 and the gate, then set ``threshold_`` on held-out inliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels; ``-1`` marks outlier rows, which never train the classifier and reach
            the detector with their label (outlier-exposure detectors use them).

        Returns
        -------
        self : OpenSetClassifier
        """
        name = type(self).__name__
        X = validate_numeric(self, X, dtype=np.float32, ensure_min_samples=2)
        if y is None:
            raise ValueError(
                f"{name} requires y to be passed, but the target y is None: it trains a "
                "classifier on the inlier class labels."
            )
        # NaN / inf labels are refused here, before any comparison with -1 casts them.
        y = check_array(y, ensure_2d=False, dtype=None, input_name="y")
        inliers, labels = split_labels(y, X.shape[0], name)
        check_classification_targets(labels)
        y = np.asarray(y)
        inlier_rows = np.flatnonzero(inliers)
        fit_in, held_in = split_holdout(
            inlier_rows.size,
            self.validation_fraction,
            self.random_state,
            min_train=2,
            estimator_name=name,
            stratify=labels,
        )
        # Outlier rows (y == -1) go with the training part: they are no inliers to calibrate on.
        train = np.sort(np.concatenate([inlier_rows[fit_in], np.flatnonzero(~inliers)]))
        calib = inlier_rows[held_in] if held_in.size else inlier_rows

        features = self.features
        if features is None:
            features = ClassifierFeatures(random_state=self.random_state)
        self.features_ = clone(features).fit(X[train], y[train])
        self.classes_ = self.features_.classes_
        if isinstance(self.detector, str):
            self.detector_ = self.detector
        else:
            Z_train, _ = self.features_.transform_with_logits(X[train])
            self.detector_ = clone(self.detector).fit(Z_train, y[train])
        self.threshold_ = float(np.quantile(self._gate(X[calib])[0], 1.0 - self.tpr))
        self.offset_ = self.threshold_
        return self

    # -- the gate ------------------------------------------------------------------------------
    def _gate(self, X):
        """(gate scores, logits) of already validated ``X``, from one pass through stage 1."""
        Z, logits = self.features_.transform_with_logits(X)
        t = self.temperature
        if self.detector_ == "msp":
            scores = softmax(logits / t, axis=1).max(axis=1)
        elif self.detector_ == "energy":
            scores = t * logsumexp(logits / t, axis=1)
        else:
            scores = self.detector_.score_samples(Z)
        return finite_scores(scores), logits

    def _validate(self, X):
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
        return self._gate(self._validate(X))[0]

    # -- predictions ---------------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Open-set labels: the class for accepted inputs, ``-1`` for rejected ones.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
            Values from ``classes_``, or ``-1`` (``"-1"`` for string classes).
        """
        scores, logits = self._gate(self._validate(X))
        return open_set_labels(self.classes_, np.argmax(logits, axis=1), scores < self.offset_)

    def predict_open_set(self, X) -> np.ndarray:
        """Alias of :meth:`predict`: the class, or ``-1`` for rejected inputs."""
        return self.predict(X)

    def predict_closed_set(self, X) -> np.ndarray:
        """The classifier's class for every input, never rejecting.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.classes_[np.argmax(self._logits(X), axis=1)]

    def _logits(self, X) -> np.ndarray:
        X = self._validate(X)
        return self.features_.transform_with_logits(X)[1]
