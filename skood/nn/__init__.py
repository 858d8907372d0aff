"""Pure torch modules used by skood's estimators.

Nothing in this package imports scikit-learn or any estimator: flows, networks, heads and
losses here are plain ``torch.nn.Module`` objects that can be used (and tested) on their own.
"""

from skood.nn.ama import AMALoss, AMAModule, gradient_penalty, mirrored_pair
from skood.nn.fisher import DiagCurvature, EKFACCurvature, kronecker_factors, per_sample_grads
from skood.nn.flows import (
    ActNorm,
    AffineCoupling,
    LUPermutation,
    NormalizingFlow,
    Permutation,
    glow_flow,
)
from skood.nn.heads import GaussianHead
from skood.nn.losses import (
    ClassifierOELoss,
    ICELoss,
    OutlierExposureLoss,
    QuantileNLLLoss,
    batch_quantile,
    radial,
)
from skood.nn.networks import (
    BackboneClassifier,
    FeaturesOf,
    LeNetEncoder,
    MLPClassifierNet,
    MLPEncoder,
    OENetwork,
    SmallCNN,
)
from skood.nn.vae import VAE, conv_vae_networks, mlp_vae_networks

__all__ = [
    "VAE",
    "AMALoss",
    "AMAModule",
    "ActNorm",
    "AffineCoupling",
    "BackboneClassifier",
    "ClassifierOELoss",
    "DiagCurvature",
    "EKFACCurvature",
    "FeaturesOf",
    "GaussianHead",
    "ICELoss",
    "LUPermutation",
    "LeNetEncoder",
    "MLPClassifierNet",
    "MLPEncoder",
    "NormalizingFlow",
    "OENetwork",
    "OutlierExposureLoss",
    "Permutation",
    "QuantileNLLLoss",
    "SmallCNN",
    "batch_quantile",
    "conv_vae_networks",
    "glow_flow",
    "gradient_penalty",
    "kronecker_factors",
    "mirrored_pair",
    "mlp_vae_networks",
    "per_sample_grads",
    "radial",
]
