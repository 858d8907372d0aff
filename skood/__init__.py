"""skood: scikit-learn-compatible out-of-distribution and anomaly detectors on torch + skorch.

Every detector is an sklearn estimator with ``fit`` / ``score_samples`` (float64, higher = more
normal) / ``decision_function`` / ``predict`` (+1 inlier, -1 outlier). In ``y``, the value -1
marks an outlier row; every other value is an inlier label.
"""

from skood.ama import AMADetector
from skood.base import TrainingDiverged
from skood.clip import CLIPZeroShot
from skood.features import ClassifierFeatures, ImageFiles, TorchFeatures, TorchvisionFeatures
from skood.flow import QuantileFlowDetector
from skood.gaussian import GaussianMahalanobis
from skood.hsc import DeepSADDetector, DeepSVDDDetector, HSCDetector, OEClassifier
from skood.ice import ICEClassifier
from skood.open_set import OpenSetClassifier
from skood.rose import ROSEScorer
from skood.vae import VAEDetector

__version__ = "0.1.0"

__all__ = [
    "AMADetector",
    "CLIPZeroShot",
    "ClassifierFeatures",
    "DeepSADDetector",
    "DeepSVDDDetector",
    "GaussianMahalanobis",
    "HSCDetector",
    "ICEClassifier",
    "ImageFiles",
    "OEClassifier",
    "OpenSetClassifier",
    "QuantileFlowDetector",
    "ROSEScorer",
    "TorchFeatures",
    "TorchvisionFeatures",
    "TrainingDiverged",
    "VAEDetector",
    "__version__",
]
