"""Classification heads.

:class:`GaussianHead` is ICE's tied-covariance Gaussian (Mahalanobis / LDA-style) layer (Wu et
al., "Towards In-Distribution Compatible OOD Detection", AAAI 2023, eq. 0.11).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["GaussianHead"]


class GaussianHead(nn.Module):
    r"""Logits :math:`h_i(z) = -(z - m_i)^\top (LL^\top)^{-1} (z - m_i)` for K trainable centres.

    ``L`` is lower-triangular with a positive diagonal, ``tril(A, -1) + diag(softplus(s) +
    diag_eps)``, initialised to the identity; ``LL^T`` plays the tied covariance. The logits are
    computed by whitening with triangular solves (``u = L^{-1} z``, ``c_i = L^{-1} m_i``,
    :math:`h_i = -\lVert u - c_i\rVert^2`), never by inverting ``LL^T``, and are clamped at 0
    from above (the pairwise-distance expansion can round to tiny positive values). There is no
    log-determinant, no 1/2 and no prior, as in the paper: softmax(h) is an equal-prior LDA
    posterior and ``exp(max h)`` lies in (0, 1].

    Parameters
    ----------
    in_features : int
        Feature dimension d.
    n_classes : int
        Number of centres K.
    diag_eps : float, default=1e-4
        Floor of L's diagonal, which keeps the solves well posed.
    """

    def __init__(self, in_features: int, n_classes: int, diag_eps: float = 1e-4) -> None:
        super().__init__()
        self.diag_eps = diag_eps
        self.means = nn.Parameter(torch.randn(n_classes, in_features))
        self.lower = nn.Parameter(torch.zeros(in_features, in_features))
        # softplus(s) + eps = 1 at initialisation: L starts as the identity.
        s0 = torch.log(torch.expm1(torch.tensor(1.0 - diag_eps)))
        self.diag_raw = nn.Parameter(torch.full((in_features,), float(s0)))

    @property
    def cholesky(self) -> Tensor:
        """L, the lower-triangular factor of the tied covariance ``LL^T``."""
        diag = F.softplus(self.diag_raw) + self.diag_eps
        return torch.tril(self.lower, diagonal=-1) + torch.diag(diag)

    def init_from_data(self, z: Tensor, labels: Tensor, shrinkage: float = 0.1) -> None:
        """Centres at the class means and L at the Cholesky factor of the shrunk pooled covariance.

        For fine-tuning from a trained feature extractor: random centres far from the trained
        features would give huge first-step losses and wreck the pretrained backbone.
        """
        with torch.no_grad():
            k, d = self.means.shape
            means = torch.stack([z[labels == c].mean(0) for c in range(k)])
            centred = z - means[labels]
            cov = centred.T @ centred / max(1, z.shape[0] - k)
            cov = (1 - shrinkage) * cov + shrinkage * torch.eye(d) * cov.diagonal().mean()
            chol = torch.linalg.cholesky(cov)
            self.means.copy_(means)
            self.lower.copy_(torch.tril(chol, diagonal=-1))
            diag = (chol.diagonal() - self.diag_eps).clamp_min(1e-6)
            self.diag_raw.copy_(diag + torch.log(-torch.expm1(-diag)))  # softplus^-1

    def forward(self, z: Tensor) -> Tensor:
        L = self.cholesky
        u = torch.linalg.solve_triangular(L, z.T, upper=False).T  # (n, d)
        c = torch.linalg.solve_triangular(L, self.means.T, upper=False).T  # (K, d)
        sq = (u * u).sum(1, keepdim=True) - 2 * u @ c.T + (c * c).sum(1)
        return -sq.clamp_min(0.0)
