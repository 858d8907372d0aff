"""Pure torch modules used by skood's estimators.

Nothing in this package imports scikit-learn or any estimator: flows, networks, heads and
losses here are plain ``torch.nn.Module`` objects that can be used (and tested) on their own.
"""

from skood.nn.flows import (
    ActNorm,
    AffineCoupling,
    LUPermutation,
    NormalizingFlow,
    Permutation,
    glow_flow,
)
from skood.nn.losses import QuantileNLLLoss, batch_quantile
from skood.nn.networks import MLPClassifierNet, SmallCNN

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "LUPermutation",
    "MLPClassifierNet",
    "NormalizingFlow",
    "Permutation",
    "QuantileNLLLoss",
    "SmallCNN",
    "batch_quantile",
    "glow_flow",
]
