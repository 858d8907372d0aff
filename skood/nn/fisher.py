r"""Per-sample gradients and per-layer empirical-Fisher curvature (DIAG and EKFAC) for ROSE.

ROSE (Choi et al., "Robust Out-of-Distribution Detection on Deep Probabilistic Generative
Models") scores a point by :math:`S^l(x) = g^l(x)^\top F_l^{-1} g^l(x)` for each layer ``l``,
with :math:`g^l(x) = \nabla_{\theta^l} \log p(x \mid \theta_0)` and :math:`F_l` the *empirical*
Fisher :math:`E_X[g g^\top]` of in-distribution rows (Eqs. 5-9 of the paper):

* **DIAG** (Eq. 6): :math:`S^l = \sum_k g_k^2 / F_{kk}`, :math:`F_{kk} = E_X[g_k^2]`; any
  parameter tensor.
* **EKFAC** (Eqs. 7-9; George et al., 2018), for a ``Linear`` / ``Conv2d`` weight ``W`` (out x
  in, the bias as an extra input column): :math:`U_A`, :math:`U_B` are the eigenvectors of the
  Kronecker factors :math:`A = E[h h^\top]` (layer inputs, or unfolded patches) and
  :math:`B = E[\delta \delta^\top]` (gradients at the layer output); with :math:`P(x) = U_B^\top
  G(x) U_A` for the per-sample gradient ``G`` (out x in), the eigenvalues are re-fitted as
  :math:`\Sigma = E_X[P^{\circ 2}]` (squared *inside* the expectation, as the paper's Alg. 1
  does; its Eq. 9 squares outside) and :math:`S^l = \sum_{ij} P_{ij}^2 / \Sigma_{ij}`.

Only the eigenvectors of ``A`` and ``B`` are used, so their scale (per position, per noise draw
or per row) does not matter. Damping, absent in the paper, adds ``damping * mean`` of the
curvature entries so that a parameter whose gradient was always 0 on the data (weights on an
always-black pixel) does not divide by zero (it acts as a Gaussian prior, the paper's footnote
6).

Per-sample gradients come from :func:`torch.func.vmap` over :func:`torch.func.grad` of a
*summed* per-row log-likelihood; the module must be in eval mode and treat rows independently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

__all__ = [
    "DiagCurvature",
    "EKFACCurvature",
    "kronecker_factors",
    "per_sample_grads",
    "supports_ekfac",
]

LogProbFn = Callable[[nn.Module, Tensor], Tensor]


class _Bound(nn.Module):
    """``forward(x) = log_prob_fn(module, x)``, so that ``functional_call`` can swap parameters."""

    def __init__(self, module: nn.Module, log_prob_fn: LogProbFn) -> None:
        super().__init__()
        self.module = module
        self.log_prob_fn = log_prob_fn

    def forward(self, x: Tensor) -> Tensor:
        return self.log_prob_fn(self.module, x)


def per_sample_grads(
    module: nn.Module,
    log_prob_fn: LogProbFn,
    x: Tensor,
    param_names: Sequence[str],
    method: str = "vmap",
) -> dict[str, Tensor]:
    """Gradients of each row's log-likelihood with respect to ``param_names``.

    Parameters
    ----------
    module : nn.Module
        In eval mode; rows must not interact (no batch statistics).
    log_prob_fn : callable ``(module, x) -> (n,)``
    x : Tensor of shape (n, ...)
    param_names : names from ``module.named_parameters()``
    method : {"vmap", "loop"}
        ``"vmap"``: one vectorised pass (``torch.func``); ``"loop"``: one backward pass per
        row, the slow reference (and a fallback for modules ``vmap`` cannot trace).

    Returns
    -------
    dict name -> Tensor of shape ``(n, *param.shape)``
    """
    params = dict(module.named_parameters())
    if method == "loop":
        chosen = [params[k] for k in param_names]
        out: dict[str, list[Tensor]] = {k: [] for k in param_names}
        for i in range(x.shape[0]):
            grads = torch.autograd.grad(log_prob_fn(module, x[i : i + 1]).sum(), chosen)
            for k, g in zip(param_names, grads, strict=True):
                out[k].append(g)
        return {k: torch.stack(v) for k, v in out.items()}
    bound = _Bound(module, log_prob_fn)
    fixed = {f"module.{k}": v.detach() for k, v in params.items() if k not in set(param_names)}
    fixed.update({f"module.{k}": v for k, v in module.named_buffers()})
    chosen = {f"module.{k}": params[k].detach() for k in param_names}

    def row_log_prob(chosen: dict[str, Tensor], row: Tensor) -> Tensor:
        return functional_call(bound, {**fixed, **chosen}, (row.unsqueeze(0),)).sum()

    grads = vmap(grad(row_log_prob), in_dims=(None, 0))(chosen, x)
    return {k: grads[f"module.{k}"] for k in param_names}


def kronecker_factors(
    module: nn.Module, log_prob_fn: LogProbFn, x: Tensor, layers: dict[str, nn.Module]
) -> dict[str, tuple[Tensor, Tensor]]:
    """Unnormalised ``A = sum h h^T`` and ``B = sum delta delta^T`` of ``Linear`` / ``Conv2d`` layers.

    One batched forward and backward pass of the summed log-likelihood, with hooks that record
    each layer's input (unfolded into patches for a convolution, with a column of ones when the
    layer has a bias) and the gradient at its output. The sums run over rows, positions and
    any repeated use of a layer within a row (a decoder applied to several noise draws).
    """
    inputs: dict[str, list[Tensor]] = {k: [] for k in layers}
    outputs: dict[str, list[Tensor]] = {k: [] for k in layers}
    handles = []

    def hook(name: str):
        def fwd(mod: nn.Module, args, out: Tensor) -> None:
            inputs[name].append(args[0].detach())
            out.register_hook(lambda g: outputs[name].append(g.detach()))

        return fwd

    for name, layer in layers.items():
        handles.append(layer.register_forward_hook(hook(name)))
    try:
        x = x.detach().requires_grad_(False)
        with torch.enable_grad():
            log_prob_fn(module, x).sum().backward(inputs=list(module.parameters()))
    finally:
        for h in handles:
            h.remove()
    module.zero_grad(set_to_none=True)
    factors = {}
    for name, layer in layers.items():
        h = torch.cat([_patches(layer, a) for a in inputs[name]])
        d = torch.cat([_output_rows(g) for g in outputs[name]])
        factors[name] = (h.T @ h, d.T @ d)
    return factors


def _patches(layer: nn.Module, a: Tensor) -> Tensor:
    """Layer input as rows ``(m, in [+1])``: one per row (Linear) or per position (Conv2d)."""
    if isinstance(layer, nn.Conv2d):
        cols = nn.functional.unfold(
            a, layer.kernel_size, layer.dilation, layer.padding, layer.stride
        )  # (n, in*kh*kw, T)
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    else:
        rows = a.reshape(-1, a.shape[-1])
    if layer.bias is not None:
        rows = torch.cat([rows, rows.new_ones(rows.shape[0], 1)], dim=1)
    return rows


def _output_rows(g: Tensor) -> Tensor:
    """Output gradients as rows ``(m, out)``: channels last for a convolution."""
    if g.dim() == 4:
        return g.permute(0, 2, 3, 1).reshape(-1, g.shape[1])
    return g.reshape(-1, g.shape[-1])


def supports_ekfac(layer: nn.Module) -> bool:
    """Linear, and ungrouped Conv2d with string-free padding, have the Kronecker structure."""
    if isinstance(layer, nn.Linear):
        return True
    return (
        isinstance(layer, nn.Conv2d)
        and layer.groups == 1
        and not isinstance(layer.padding, str)
        and layer.padding_mode == "zeros"
    )


def _damped(values: Tensor, damping: float) -> Tensor:
    return values + damping * values.mean()


class DiagCurvature:
    """Diagonal empirical Fisher of a set of parameters (ROSE's DIAG, Eq. 6)."""

    kind = "diag"

    def __init__(self, param_names: Sequence[str]) -> None:
        self.param_names = list(param_names)
        self._sum: Tensor | None = None
        self._count = 0
        self.fisher_: Tensor | None = None

    def _flat(self, grads: dict[str, Tensor]) -> Tensor:
        return torch.cat([grads[k].reshape(grads[k].shape[0], -1) for k in self.param_names], 1)

    def accumulate(self, grads: dict[str, Tensor]) -> None:
        sq = self._flat(grads).double().pow(2).sum(0)
        self._sum = sq if self._sum is None else self._sum + sq
        self._count += next(iter(grads.values())).shape[0]

    def finalize(self, damping: float) -> None:
        self.fisher_ = _damped(self._sum / self._count, damping).cpu()
        self._sum = None

    def score(self, grads: dict[str, Tensor]) -> Tensor:
        g = self._flat(grads).double()
        return (g.pow(2) / self.fisher_.to(g.device)).sum(1)


class EKFACCurvature:
    """EKFAC empirical Fisher of one Linear / Conv2d layer (ROSE's EKFAC, Eqs. 7-9).

    Parameters
    ----------
    weight, bias : str or None
        Parameter names of the layer's weight and bias (``bias`` None when it has none).
    factors : (A, B)
        The Kronecker factors from :func:`kronecker_factors`; only their eigenvectors are kept.
    """

    kind = "ekfac"

    def __init__(self, weight: str, bias: str | None, factors: tuple[Tensor, Tensor]) -> None:
        self.weight, self.bias = weight, bias
        self.param_names = [weight] + ([bias] if bias else [])
        a, b = (f.double() for f in factors)
        self.u_a = torch.linalg.eigh(a).eigenvectors
        self.u_b = torch.linalg.eigh(b).eigenvectors
        self._sum: Tensor | None = None
        self._count = 0
        self.sigma_: Tensor | None = None

    def _project(self, grads: dict[str, Tensor]) -> Tensor:
        w = grads[self.weight]
        g = w.reshape(w.shape[0], w.shape[1], -1).double()  # (n, out, in*kh*kw)
        if self.bias:
            g = torch.cat([g, grads[self.bias].double().unsqueeze(-1)], dim=2)
        u_a, u_b = self.u_a.to(g.device), self.u_b.to(g.device)
        return u_b.T @ g @ u_a  # (n, out, in')

    def accumulate(self, grads: dict[str, Tensor]) -> None:
        sq = self._project(grads).pow(2).sum(0)
        self._sum = sq if self._sum is None else self._sum + sq
        self._count += grads[self.weight].shape[0]

    def finalize(self, damping: float) -> None:
        self.sigma_ = _damped(self._sum / self._count, damping).cpu()
        self.u_a, self.u_b = self.u_a.cpu(), self.u_b.cpu()
        self._sum = None

    def score(self, grads: dict[str, Tensor]) -> Tensor:
        p = self._project(grads)
        return (p.pow(2) / self.sigma_.to(p.device)).sum((1, 2))
