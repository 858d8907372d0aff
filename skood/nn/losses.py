r"""Losses written by hand because they are a paper's own contribution."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "OE_EPS",
    "ClassifierOELoss",
    "ICELoss",
    "OutlierExposureLoss",
    "QuantileNLLLoss",
    "batch_quantile",
    "radial",
]


def batch_quantile(values: Tensor, q: float) -> Tensor:
    r"""The ``q``-quantile of a 1-D tensor with linear interpolation, differentiable.

    Sorts ascending and interpolates between the two order statistics around
    :math:`h = (B - 1) q`: :math:`Q = \ell_{(\lfloor h\rfloor)} + (h - \lfloor h\rfloor)
    (\ell_{(\lfloor h\rfloor + 1)} - \ell_{(\lfloor h\rfloor)})`, exactly
    ``torch.quantile(values, q)`` and ``numpy.quantile(values, q, method="linear")``. The
    gradient flows to (at most) the two samples at those ranks.

    Examples
    --------
    >>> import torch
    >>> values = torch.tensor([3.0, 1.0, 4.0, 1.0, 5.0], requires_grad=True)
    >>> q = batch_quantile(values, 0.9)  # h = 3.6: 4 + 0.6 * (5 - 4)
    >>> round(q.item(), 4), bool(torch.allclose(q, torch.quantile(values, 0.9)))
    (4.6, True)
    >>> q.backward()
    >>> values.grad  # only the two samples around the quantile get a gradient
    tensor([0.0000, 0.0000, 0.4000, 0.0000, 0.6000])
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


# -- outlier exposure (Liznerski et al., "Exposing Outlier Exposure", TMLR 2022) ----------------

#: Added where a loss divides by or takes the log of a quantity that reaches 0 when an OE sample
#: sits exactly on the centre (the authors' code uses the same 1e-9).
OE_EPS = 1e-9


def radial(z: Tensor, kind: str = "pseudo_huber") -> Tensor:
    r"""The radial function h of the hypersphere classifier, row-wise on ``z`` of shape (n, r).

    ``"pseudo_huber"``: :math:`\sqrt{\lVert z\rVert^2 + 1} - 1` (the paper's best, App. E);
    ``"squared"``: :math:`\lVert z\rVert^2`; ``"l2"``: :math:`\lVert z\rVert`; ``"l1"``:
    :math:`\lVert z\rVert_1`.
    """
    z = z.reshape(z.shape[0], -1)
    if kind == "pseudo_huber":
        return torch.sqrt(z.pow(2).sum(dim=1) + 1.0) - 1.0
    if kind == "squared":
        return z.pow(2).sum(dim=1)
    if kind == "l2":
        return torch.linalg.vector_norm(z, ord=2, dim=1)
    if kind == "l1":
        return torch.linalg.vector_norm(z, ord=1, dim=1)
    raise ValueError(f"Unknown radial function {kind!r}: pseudo_huber, squared, l2 or l1.")


class OutlierExposureLoss(nn.Module):
    r"""The losses of the hypersphere classifier and the methods it is compared with.

    ``forward(output, target)``: ``output`` is the network's representation (n, r) (or a logit
    (n,) for ``"bce"`` / ``"focal"``); ``target`` is negative (skood's ``-1``) for
    outlier-exposure rows and non-negative for normal ones. The mean over the (mixed) batch is
    returned.

    * ``"hsc"``: :math:`h(z)` for normal rows, :math:`-\log(1 - e^{-h(z)})` for OE rows, computed as
      ``-log(-expm1(-h))`` with h clamped at ``OE_EPS`` so that an OE row on the centre gives a
      large, finite loss.
    * ``"bce"``: binary cross-entropy with logits, OE as the positive (anomalous) class.
    * ``"focal"``: :math:`-\alpha (1 - p_t)^\gamma \log p_t` (Lin et al., 2017); ``gamma=0`` is BCE
      scaled by ``alpha``.
    * ``"sad"``: Deep SAD with centre 0, :math:`\lVert z\rVert^2` for normal rows and
      :math:`\eta / (\lVert z\rVert^2 + \epsilon)` for OE rows.
    * ``"svdd"``: Deep SVDD, :math:`\lVert z\rVert^2` (the centre is subtracted by the network).
    """

    def __init__(
        self,
        method: str = "hsc",
        *,
        radial: str = "pseudo_huber",
        gamma: float = 2.0,
        alpha: float = 0.5,
        eta: float = 1.0,
    ) -> None:
        super().__init__()
        if method not in {"hsc", "bce", "focal", "sad", "svdd"}:
            raise ValueError(f"Unknown outlier-exposure loss {method!r}.")
        self.method = method
        self.radial = radial
        self.gamma = gamma
        self.alpha = alpha
        self.eta = eta

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        oe = (target < 0).to(device=output.device).reshape(-1)
        if self.method in {"bce", "focal"}:
            logit = output.reshape(-1)
            target = oe.to(logit.dtype)
            if self.method == "bce":
                return nn.functional.binary_cross_entropy_with_logits(logit, target)
            # log p_t and p_t of the true class, from logsigmoid (stable for any logit).
            log_pt = nn.functional.logsigmoid(torch.where(oe, logit, -logit))
            return (-self.alpha * (1.0 - log_pt.exp()).pow(self.gamma) * log_pt).mean()
        if self.method == "hsc":
            h = radial(output, self.radial)
            oe_loss = -torch.log(-torch.expm1(-h.clamp_min(OE_EPS)))
            return torch.where(oe, oe_loss, h).mean()
        sq = output.reshape(output.shape[0], -1).pow(2).sum(dim=1)
        if self.method == "sad":
            return torch.where(oe, self.eta / (sq + OE_EPS), sq).mean()
        return sq.mean()  # svdd: OE rows never reach it


# -- ICE (Wu et al., "Towards In-Distribution Compatible OOD Detection", AAAI 2023) ----------------


class ICELoss(nn.Module):
    r"""ICE's objective on Gaussian-head logits h (all <= 0), eq. 0.15.

    ``forward(h, target)``: rows with ``target >= 0`` are inliers of that class, rows with
    ``target < 0`` auxiliary outliers. Each term is the mean over its own sub-batch:

    .. math:: L = E_{in}[CE(h, y)] + \lambda (E_{in}[-h_y] + E_{out}[-\log(1 - e^{\max_i h_i})])

    The outlier term is computed as ``-log(-expm1(min(max h, -ood_eps)))``, finite for an outlier
    exactly on a centre. ``id_term=False`` is the paper's ICE^- ablation.
    """

    def __init__(self, ood_weight: float = 0.5, ood_eps: float = 1e-6, id_term: bool = True):
        super().__init__()
        self.ood_weight = ood_weight
        self.ood_eps = ood_eps
        self.id_term = id_term

    def forward(self, h: Tensor, target: Tensor) -> Tensor:
        target = target.to(device=h.device, dtype=torch.long).reshape(-1)
        inlier = target >= 0
        h_in, y_in = h[inlier], target[inlier]
        loss = nn.functional.cross_entropy(h_in, y_in) if h_in.shape[0] else h.sum() * 0
        reg = h.new_zeros(())
        if self.id_term and h_in.shape[0]:
            reg = reg - h_in.gather(1, y_in[:, None]).mean()
        h_out = h[~inlier]
        if h_out.shape[0]:
            nearest = h_out.max(dim=1).values.clamp_max(-self.ood_eps)
            reg = reg - torch.log(-torch.expm1(nearest)).mean()
        return loss + self.ood_weight * reg


class ClassifierOELoss(nn.Module):
    r"""Cross-entropy on inliers plus an outlier-exposure term on linear logits f (ICE's baselines).

    ``forward(logits, target)``: rows with ``target >= 0`` are inliers of that class, rows with
    ``target < 0`` auxiliary outliers; each term is the mean over its own sub-batch.

    * ``"ce"``: :math:`E_{in}[CE(f, y)]`, outliers ignored (the plain classifier).
    * ``"oe"``: :math:`E_{in}[CE] + \lambda E_{out}[\mathrm{LSE}(f) - \tfrac1K\sum_k f_k]`, the
      cross-entropy of the outliers' softmax to the uniform distribution (Hendrycks et al., 2019,
      whose code drops the constant :math:`\log K`; λ = 0.5 there).
    * ``"energy"``: :math:`E_{in}[CE] + \lambda (E_{in}[\max(0, E(x) - m_{in})^2] +
      E_{out}[\max(0, m_{out} - E(\tilde x))^2])` with the energy :math:`E = -\mathrm{LSE}(f)`:
      the squared-hinge form with margins of Liu et al. (2020), λ = 0.1, margins (-25, -7) on
      CIFAR-10. ICE's paper writes the margin-free :math:`-E_{in}[\mathrm{LSE}] +
      E_{out}[\mathrm{LSE}]`, which is unbounded below; the original is used here.
    """

    def __init__(
        self,
        method: str = "oe",
        ood_weight: float = 0.5,
        margins: tuple[float, float] = (-25.0, -7.0),
    ) -> None:
        super().__init__()
        if method not in {"ce", "oe", "energy"}:
            raise ValueError(f"Unknown classifier outlier-exposure loss {method!r}.")
        self.method = method
        self.ood_weight = ood_weight
        self.margins = margins

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        target = target.to(device=logits.device, dtype=torch.long).reshape(-1)
        inlier = target >= 0
        f_in, f_out = logits[inlier], logits[~inlier]
        loss = (
            nn.functional.cross_entropy(f_in, target[inlier]) if f_in.shape[0] else logits.sum() * 0
        )
        if self.method == "ce":
            return loss
        reg = logits.new_zeros(())
        if self.method == "oe":
            if f_out.shape[0]:
                reg = (torch.logsumexp(f_out, dim=1) - f_out.mean(dim=1)).mean()
        else:
            m_in, m_out = self.margins
            if f_in.shape[0]:
                energy_in = -torch.logsumexp(f_in, dim=1)
                reg = reg + nn.functional.relu(energy_in - m_in).pow(2).mean()
            if f_out.shape[0]:
                energy_out = -torch.logsumexp(f_out, dim=1)
                reg = reg + nn.functional.relu(m_out - energy_out).pow(2).mean()
        return loss + self.ood_weight * reg
