r"""Losses written by hand because they are a paper's own contribution."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["QuantileNLLLoss", "batch_quantile"]


def batch_quantile(values: Tensor, q: float) -> Tensor:
    r"""The ``q``-quantile of a 1-D tensor with linear interpolation, differentiable.

    Sorts ascending and interpolates between the two order statistics around
    :math:`h = (B - 1) q`: :math:`Q = \ell_{(\lfloor h\rfloor)} + (h - \lfloor h\rfloor)
    (\ell_{(\lfloor h\rfloor + 1)} - \ell_{(\lfloor h\rfloor)})`, exactly
    ``torch.quantile(values, q)`` and ``numpy.quantile(values, q, method="linear")``. The
    gradient flows to (at most) the two samples at those ranks.
    """
    if values.ndim != 1 or values.numel() == 0:
        raise ValueError(f"Expected a non-empty 1-D tensor, got shape {tuple(values.shape)}.")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must lie in [0, 1], got {q}.")
    ordered, _ = torch.sort(values)
    h = (values.numel() - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, values.numel() - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


class QuantileNLLLoss(nn.Module):
    r"""Minus the ``q``-quantile of the batch log-likelihoods (Eq. 4 of QuantOD).

    :math:`\mathcal L_{qNLL} = -Q_q(\{\log p_\theta(r_i)\}_{i \in \text{batch}})`. With
    ``q="mean"`` it is the ordinary mean negative log-likelihood. There is no extra term: only
    the boundary inliers with the lowest likelihood get a gradient (two per batch).

    Parameters
    ----------
    q : float in [0, 1) or "mean"
        The quantile; ``0`` gives ``-min``.

    Notes
    -----
    ``forward`` takes an ignored second argument so that it plugs into skorch's default
    ``get_loss(y_pred, y_true)`` for unsupervised training.

    References
    ----------
    Taghikhah et al., "Quantile-based Maximum Likelihood Training for Outlier Detection",
    AAAI 2024, Eq. 4.

    Examples
    --------
    >>> import torch
    >>> ll = torch.tensor([-3.0, -1.0, -2.0, 0.0, -4.0])
    >>> QuantileNLLLoss(q=0.25)(ll)
    tensor(3.)
    >>> QuantileNLLLoss(q="mean")(ll)
    tensor(2.)
    """

    def __init__(self, q: float | str = 0.05) -> None:
        super().__init__()
        if q != "mean" and not (isinstance(q, (int, float)) and 0.0 <= q < 1.0):
            raise ValueError(f"q must be a float in [0, 1) or 'mean', got {q!r}.")
        self.q = q

    def forward(self, log_likelihood: Tensor, target: Tensor | None = None) -> Tensor:
        if self.q == "mean":
            return -log_likelihood.mean()
        return -batch_quantile(log_likelihood, float(self.q))
