"""skood: scikit-learn-compatible out-of-distribution and anomaly detectors on torch + skorch.

Every detector is an sklearn estimator with ``fit`` / ``score_samples`` (float64, higher = more
normal) / ``decision_function`` / ``predict`` (+1 inlier, -1 outlier). In ``y``, the value -1
marks an outlier row; every other value is an inlier label.

The estimators are imported on first use (PEP 562), so ``import skood.nn`` (plain torch modules)
does not import scikit-learn or skorch.
"""

from __future__ import annotations

import importlib

from skood._compat import install_renamed_modules

__version__ = "0.3.0"

#: Public name -> the module that defines it.
_LOCATIONS = {
    "AMADetector": "skood.ama",
    "CLIPZeroShot": "skood.clip",
    "ConformalDetector": "skood.conformal",
    "ClassifierFeatures": "skood.features",
    "DeepSADDetector": "skood.hsc",
    "DeepSVDDDetector": "skood.hsc",
    "EnsembleDetector": "skood.ensemble",
    "GaussianMahalanobis": "skood.gaussian",
    "HSCDetector": "skood.hsc",
    "ICEClassifier": "skood.ice",
    "ImageFiles": "skood.vision",
    "KNNDetector": "skood.knn",
    "OEClassifier": "skood.hsc",
    "OpenSetClassifier": "skood.open_set",
    "QuantileFlowDetector": "skood.flow",
    "ROSEScorer": "skood.rose",
    "TorchFeatures": "skood.features",
    "TorchvisionFeatures": "skood.vision",
    "TrainingDiverged": "skood.base",
    "VAEDetector": "skood.vae",
    "load": "skood.io",
    "save": "skood.io",
}

__all__ = [*sorted(_LOCATIONS), "__version__"]

install_renamed_modules()  # models saved by older versions name old modules


def __getattr__(name: str):
    if name not in _LOCATIONS:
        try:  # a submodule (skood.features, skood.nn, ...), as an eager package would have it
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module 'skood' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(_LOCATIONS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
