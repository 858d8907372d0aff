"""sklearn's estimator checks for every public skood estimator, expected failures with reasons."""

import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from skood import ClassifierFeatures, GaussianMahalanobis, QuantileFlowDetector, TorchFeatures
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


def _expected_failures(estimator):
    failures = {}
    held_out = getattr(estimator, "validation_fraction", 0) > 0 or (
        getattr(estimator, "offset_cv", None) is not None
    )
    if held_out:
        failures["check_outliers_train"] = _HELD_OUT_OFFSET
        failures["check_outliers_fit_predict"] = _HELD_OUT_OFFSET
    if isinstance(estimator, (QuantileFlowDetector, ClassifierFeatures, TorchFeatures)):
        failures["check_methods_subset_invariance"] = _FLOAT32
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
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
