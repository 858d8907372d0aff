"""sklearn's estimator checks for every public skood estimator, expected failures with reasons."""

import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from skood import (
    ClassifierFeatures,
    GaussianMahalanobis,
    OpenSetClassifier,
    QuantileFlowDetector,
    TorchFeatures,
)
from tests.conftest import TINY_FLOW

_HELD_OUT_OFFSET = (
    "offset_ is calibrated on held-out inliers (QuantOD spec, pitfall 5), so exactly "
    "contamination * n training rows are not flagged; the instance calibrated on the training "
    "rows passes this check"
)
_FLOAT32 = (
    "torch networks run in float32 and BLAS kernels differ by batch size, so a row's output moves "
    "by ~1e-7 to 1e-6 relative when computed in another batch (above the check's 1e-7); whether a "
    "given configuration trips it depends on the layer widths"
)

_OPEN_SET = (
    "OpenSetClassifier.predict is open-set by design: inputs the gate rejects get -1, which is "
    "not in classes_ and is not the argmax of decision_function; predict_closed_set is the "
    "plain classifier"
)

_SMALL_STAGE1 = ClassifierFeatures(hidden_sizes=(16,), max_epochs=5, random_state=0)


def _expected_failures(estimator):
    failures = {}
    held_out = getattr(estimator, "validation_fraction", 0) > 0 or (
        getattr(estimator, "offset_cv", None) is not None
    )
    if held_out:
        failures["check_outliers_train"] = _HELD_OUT_OFFSET
        failures["check_outliers_fit_predict"] = _HELD_OUT_OFFSET
    torch_based = (QuantileFlowDetector, ClassifierFeatures, TorchFeatures, OpenSetClassifier)
    if isinstance(estimator, torch_based):
        failures["check_methods_subset_invariance"] = _FLOAT32
    if isinstance(estimator, OpenSetClassifier):
        failures["check_classifiers_train"] = _OPEN_SET
        failures["check_classifiers_classes"] = _OPEN_SET
    return failures


@parametrize_with_checks(
    [
        QuantileFlowDetector(**TINY_FLOW, random_state=0),
        QuantileFlowDetector(**TINY_FLOW, validation_fraction=0.0, random_state=0),
        QuantileFlowDetector(**TINY_FLOW, q="mean", coupling="realnvp", permutation="learned"),
        GaussianMahalanobis(),
        GaussianMahalanobis(offset_cv=None),
        GaussianMahalanobis(aggregate="logsumexp", covariance="ledoit_wolf", offset_cv=None),
        TorchFeatures(torch.nn.LazyLinear, module_kwargs={"out_features": 3}, random_state=0),
        ClassifierFeatures(hidden_sizes=(8,), max_epochs=2, random_state=0),
        ClassifierFeatures(max_epochs=2, batch_size=32, random_state=0),  # default 128 wide
        OpenSetClassifier(_SMALL_STAGE1, random_state=0),
        OpenSetClassifier(_SMALL_STAGE1, detector="energy", validation_fraction=0.0),
        OpenSetClassifier(_SMALL_STAGE1, detector=GaussianMahalanobis(offset_cv=None)),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
