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
from sklearn.utils.validation import column_or_1d

from skood.base import (
    FRACTION_CONSTRAINT,
    GATE_CONTAMINATION_CONSTRAINT,
    LogitClassifierMixin,
    check_class_labels,
)
from skood.features import ClassifierFeatures

__all__ = ["OpenSetClassifier"]

_LOGIT_GATES = ("msp", "energy")


class OpenSetClassifier(LogitClassifierMixin, ClassifierMixin, BaseEstimator):
    """A classifier that rejects what it was not trained on (QuantOD's two-stage framework).

    Read more in the :ref:`User Guide <paper_quantod>`.

    ``fit(X, y)`` holds out a stratified ``validation_fraction`` of the inlier rows, trains the
    feature extractor's classifier on the rest (stage 1), fits the detector on their penultimate
    features, and sets the gate's threshold ``offset_`` so that a fraction ``1 - contamination``
    of the held-out inliers passes it (the paper's TPR-95 operating point by default). At
    inference an input whose gate score falls below ``offset_`` is rejected (label ``-1``); the
    others get the classifier's class.

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
    contamination : float in [0, 1) or "auto", default=0.05
        Fraction of held-out inliers that the gate rejects; ``offset_`` is their
        ``contamination``-quantile score (0.05: the TPR-95 operating point; ``"auto"`` is 0.1).
    validation_fraction : float in [0, 1), default=0.2
        Inlier rows held out (per class) from both stages to set ``offset_``. With 0 the
        threshold is set on the training rows, which the stages have seen, so it accepts more
        new inliers than ``1 - contamination`` and more outliers too.
    temperature : float > 0, default=1.0
        Softmax / energy temperature for the ``"msp"`` and ``"energy"`` gates. Set on a fitted
        model with such a gate, it changes :meth:`score_samples` at once; the rejecting outputs
        then raise until the model is refitted, because ``offset_`` was set at the fitted
        temperature.
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
    offset_ : float
        Gate score below which inputs are rejected:
        ``outlier_decision_function = score_samples - offset_``.
    calibration_scores_ : ndarray of float64
        The sorted gate scores of the held-out inliers ``offset_`` was set from.
    calibration_held_out_ : bool
        Whether the fitted score never saw those rows (held out, or nothing fitted), which
        conformal p-values need (:class:`skood.conformal.ConformalDetector` reuses them then).
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

    @property
    def _scoring_params(self) -> tuple[str, ...]:
        # Only the logit gates read the temperature; a fitted detector's score ignores it.
        return ("temperature",) if isinstance(self.detector, str) else ()

    _parameter_constraints: dict = {
        "features": [HasMethods(["fit", "transform_with_logits"]), None],
        "detector": [StrOptions(set(_LOGIT_GATES)), HasMethods(["fit", "score_samples"])],
        "contamination": GATE_CONTAMINATION_CONSTRAINT,
        "validation_fraction": FRACTION_CONSTRAINT,
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        features=None,
        detector="msp",
        *,
        contamination=0.05,
        validation_fraction=0.2,
        temperature=1.0,
        random_state=None,
    ):
        self.features = features
        self.detector = detector
        self.contamination = contamination
        self.validation_fraction = validation_fraction
        self.temperature = temperature
        self.random_state = random_state

    # -- fitting -------------------------------------------------------------------------------
    def _validate_training_data(self, X, y):
        X = self._validate_X(X, reset=True, dtype=np.float32)
        check_class_labels(y, X.shape[0], type(self).__name__)  # 2 classes at least, no NaN
        return X, column_or_1d(y)

    def _fit_model(self, X, y, rng, X_calibration) -> None:
        """Train stage 1 (outlier rows never train the classifier) and the gate on its output.

        The -1 rows reach the detector with their label: outlier-exposure detectors use them.
        """
        features = self.features
        if features is None:
            features = ClassifierFeatures(random_state=self.random_state)
        self.features_ = clone(features).fit(X, y)
        self.classes_ = self.features_.classes_
        if isinstance(self.detector, str):
            self.detector_ = self.detector
        else:
            Z, _ = self.features_.transform_with_logits(X)
            self.detector_ = clone(self.detector).fit(Z, y)

    # -- the gate ------------------------------------------------------------------------------
    def _score_samples(self, X: np.ndarray, *, return_logits: bool = False):
        """The gate's score of validated rows (and the logits, from one pass through stage 1)."""
        Z, logits = self.features_.transform_with_logits(X)
        t = self.temperature
        if self.detector_ == "msp":
            scores = softmax(logits / t, axis=1).max(axis=1)
        elif self.detector_ == "energy":
            scores = t * logsumexp(logits / t, axis=1)
        else:
            scores = self.detector_.score_samples(Z)
        return (scores, logits) if return_logits else scores

    def _logits(self, X: np.ndarray) -> np.ndarray:
        return self.features_.transform_with_logits(X)[1]

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
        return self.predict_open_set(X)
