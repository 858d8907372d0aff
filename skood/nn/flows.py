r"""Normalizing-flow building blocks on feature vectors.

Every transform maps ``x -> (y, log|det dy/dx|)`` per sample in ``forward`` and has an exact
``inverse``. A :class:`NormalizingFlow` chains them and evaluates

.. math:: \log p(x) = \sum_d \left(-\tfrac12 z_d^2 - \tfrac12\log 2\pi\right) + \log|\det \partial f/\partial x|,
          \qquad z = f(x),

which is Eq. 3 of Taghikhah et al. (2024) in log form, in nats, with the constant kept.

The default architecture (:func:`glow_flow`) follows the authors' QuantOD code (FrEIA 0.2):
``ActNorm -> fixed random permutation -> GLOW affine coupling`` repeated ``n_blocks`` times.

References
----------
Taghikhah, M., Kumar, N., Šegvić, S., Eslami, A., Gumhold, S. "Quantile-based Maximum
Likelihood Training for Outlier Detection", AAAI 2024.
Kingma, D. P., Dhariwal, P. "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018.
Dinh, L., Sohl-Dickstein, J., Bengio, S. "Density estimation using Real NVP", ICLR 2017.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from skood._compat import add_missing_flow_buffers

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "LUPermutation",
    "NormalizingFlow",
    "Permutation",
    "glow_flow",
    "mlp",
]

_LOG_2PI = math.log(2.0 * math.pi)
# FrEIA's ATAN soft clamp: s = clamp * 0.636 * atan(s_hat); 0.636 ~ 2/pi, so |s| < clamp.
_ATAN_SCALE = 0.636


def mlp(
    in_features: int,
    out_features: int,
    hidden_sizes: Sequence[int],
    dropout: float = 0.0,
) -> nn.Sequential:
    """Coupling subnet of the QuantOD code.

    ``[Linear -> Dropout -> ReLU]`` to each width of ``hidden_sizes``, then ``Linear(out)``. The
    authors' subnet, "2 FC layers" of width 512 between the input and output layers, is
    ``hidden_sizes=(512, 512, 512)``: four Linear layers.
    """
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden_sizes:
        layers += [nn.Linear(width, h), nn.Dropout(dropout), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class ActNorm(nn.Module):
    r"""Per-feature affine normalisation, :math:`y = x\,e^{a} + b`, :math:`\log|\det| = \sum_d a_d`.

    Initialised from data by :meth:`initialize` so that its output has zero mean and unit
    standard deviation (Kingma & Dhariwal, 2018). skood calls it once on the whole training set
    in ``fit`` rather than on "the first batch", so the result does not depend on data order.

    Examples
    --------
    >>> import torch
    >>> norm = ActNorm(3)
    >>> x = torch.randn(100, 3) * 5 + 2
    >>> norm.initialize(x)
    >>> y, logdet = norm(x)
    >>> bool(torch.allclose(y.mean(0), torch.zeros(3), atol=1e-5))
    True
    """

    def __init__(self, features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.bias = nn.Parameter(torch.zeros(features))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        # eps keeps a (near-)constant column from producing an infinite scale.
        mean, std = x.mean(0), x.std(0, unbiased=False)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.bias.copy_(-mean * torch.exp(self.log_scale))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = x * torch.exp(self.log_scale) + self.bias
        return y, self.log_scale.sum().expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return (y - self.bias) * torch.exp(-self.log_scale)


class Permutation(nn.Module):
    """A fixed permutation of the features (volume preserving, ``log|det| = 0``).

    Parameters
    ----------
    perm : Tensor of int64
        The permutation; ``y = x[:, perm]``.
    """

    def __init__(self, perm: Tensor) -> None:
        super().__init__()
        self.register_buffer("perm", perm.clone())
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y[:, self.inv_perm]


class LUPermutation(nn.Module):
    r"""Learned invertible linear map ("1x1 convolution") in LU form, Glow Sec. 3.2.

    :math:`W = P L (U + \operatorname{diag}(\sigma\, e^{s}))` with ``P`` a fixed permutation,
    ``L`` unit lower-triangular, ``U`` strictly upper-triangular and :math:`\sigma` the fixed
    signs, so :math:`\log|\det W| = \sum s`. This is what the QuantOD paper describes ("a learned
    invertible 1x1 conv after every coupling"); the authors' code uses a fixed permutation instead.
    """

    def __init__(self, features: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(features, features, generator=generator))
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        self.register_buffer("p", p)
        self.register_buffer("sign", torch.sign(diag))
        self.register_buffer("lower_mask", torch.tril(torch.ones(features, features), -1))
        self.register_buffer("eye", torch.eye(features))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_diag = nn.Parameter(torch.log(diag.abs()))

    def _factors(self) -> tuple[Tensor, Tensor]:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * torch.exp(self.log_diag))
        return lower, upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        lower, upper = self._factors()
        weight = self.p @ lower @ upper
        return x @ weight.T, self.log_diag.sum().expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        lower, upper = self._factors()
        # x W^T = y  <=>  W x^T = y^T with W = P L U: solve P^T y^T, then L, then U.
        rhs = self.p.T @ y.T
        rhs = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, rhs, upper=True).T


class AffineCoupling(nn.Module):
    r"""Two-sided affine coupling block (FrEIA's GLOW / RNVP / NICE / GIN blocks).

    The input splits into :math:`u_1` (``features // 2`` dims) and :math:`u_2`; then

    .. math::
        v_1 = u_1 \odot e^{s_2(u_2)} + t_2(u_2), \qquad
        v_2 = u_2 \odot e^{s_1(v_1)} + t_1(v_1),

    with the soft clamp :math:`s = c \cdot 0.636 \arctan(\hat s)` and
    :math:`\log|\det| = \sum s_1 + \sum s_2`. The second half is conditioned on the already
    transformed :math:`v_1`; the paper's Eq. 2 writes :math:`u_1` there, but :math:`u_1` is not
    known when inverting (only :math:`v_1` is), so this follows the authors' code.

    Parameters
    ----------
    features : int
        Input dimension (at least 2).
    hidden_sizes, dropout :
        Subnet shape, see :func:`mlp`.
    clamp : float
        Soft-clamp bound ``c`` on the log-scales.
    kind : {"glow", "realnvp", "nice", "gin"}
        ``glow``: one subnet per side outputs ``[s, t]``; ``realnvp``: separate ``s`` and ``t``
        subnets; ``nice``: additive (``s = 0``); ``gin``: volume preserving (``s`` centred to sum 0).
    """

    KINDS = ("glow", "realnvp", "nice", "gin")

    def __init__(
        self,
        features: int,
        hidden_sizes: Sequence[int] = (512, 512, 512),
        dropout: float = 0.0,
        clamp: float = 3.0,
        kind: str = "glow",
    ) -> None:
        super().__init__()
        if features < 2:
            raise ValueError(f"A coupling block needs at least 2 features, got {features}.")
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}.")
        self.kind, self.clamp = kind, clamp
        self.d1 = features // 2
        self.d2 = features - self.d1

        def subnet(n_in: int, n_out: int) -> nn.Module:
            return mlp(n_in, n_out, hidden_sizes, dropout)

        # net2 conditions the first half on u2; net1 conditions the second half on v1.
        if kind == "nice":
            self.net2, self.net1 = subnet(self.d2, self.d1), subnet(self.d1, self.d2)
        elif kind == "realnvp":
            self.s_net2, self.t_net2 = subnet(self.d2, self.d1), subnet(self.d2, self.d1)
            self.s_net1, self.t_net1 = subnet(self.d1, self.d2), subnet(self.d1, self.d2)
        else:
            self.net2, self.net1 = subnet(self.d2, 2 * self.d1), subnet(self.d1, 2 * self.d2)

    def _scale_shift(self, side: int, cond: Tensor) -> tuple[Tensor, Tensor]:
        if self.kind == "nice":
            shift = (self.net1 if side == 1 else self.net2)(cond)
            return torch.zeros_like(shift), shift
        if self.kind == "realnvp":
            s_net, t_net = (self.s_net1, self.t_net1) if side == 1 else (self.s_net2, self.t_net2)
            s_hat, shift = s_net(cond), t_net(cond)
        else:
            s_hat, shift = (self.net1 if side == 1 else self.net2)(cond).chunk(2, dim=1)
        log_scale = self.clamp * _ATAN_SCALE * torch.atan(s_hat)
        if self.kind == "gin":
            log_scale = log_scale - log_scale.mean(dim=1, keepdim=True)
        return log_scale, shift

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u1, u2 = x[:, : self.d1], x[:, self.d1 :]
        s2, t2 = self._scale_shift(2, u2)
        v1 = u1 * torch.exp(s2) + t2
        s1, t1 = self._scale_shift(1, v1)
        v2 = u2 * torch.exp(s1) + t1
        return torch.cat([v1, v2], dim=1), s1.sum(dim=1) + s2.sum(dim=1)

    def inverse(self, y: Tensor) -> Tensor:
        v1, v2 = y[:, : self.d1], y[:, self.d1 :]
        s1, t1 = self._scale_shift(1, v1)
        u2 = (v2 - t1) * torch.exp(-s1)
        s2, t2 = self._scale_shift(2, u2)
        u1 = (v1 - t2) * torch.exp(-s2)
        return torch.cat([u1, u2], dim=1)


class NormalizingFlow(nn.Module):
    r"""A chain of invertible transforms onto a standard normal base distribution.

    ``forward(x)`` returns the per-sample log-likelihood :math:`\log p(x)` in nats (shape
    ``(n,)``), so that a training loop (or skorch's ``infer``) sees the quantity the loss is
    built from; :meth:`transform` returns ``(z, log|det|)`` and :meth:`inverse` maps ``z`` back.

    Examples
    --------
    >>> import torch
    >>> flow = glow_flow(4, n_blocks=2, hidden_sizes=(16, 16)).eval()
    >>> x = torch.randn(8, 4)
    >>> flow(x).shape
    torch.Size([8])
    >>> bool(torch.allclose(flow.inverse(flow.transform(x)[0]), x, atol=1e-5))
    True
    """

    def __init__(self, transforms: Sequence[nn.Module]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        # Set by pin_columns; None while every column goes through the transforms.
        self.register_buffer("flow_columns", None)
        self.register_buffer("pinned_columns", None)
        self.register_buffer("pinned_loc", None)
        self.register_buffer("pinned_scale", None)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        add_missing_flow_buffers(self)  # saved by an older skood (skood._compat)

    def pin_columns(self, n_features: int, pinned: Tensor, loc: Tensor, scale: Tensor) -> None:
        r"""Model the columns ``pinned`` apart, as independent narrow Gaussians.

        The density becomes :math:`p(x) = p_{flow}(x_F) \prod_{j \in P} N(x_j; loc_j, scale_j^2)`
        over ``n_features`` columns, where the transforms see only the other columns ``F`` (in
        their original order). This is how a column that is constant on the training rows
        (a dead ReLU unit, a border pixel) gets a bounded likelihood: a flow cannot fit a
        degenerate direction, whose density grows without bound as its scale shrinks, and a row
        that leaves the constant is penalised by ``((x_j - loc_j) / scale_j)^2 / 2`` nats.

        Parameters
        ----------
        n_features : int
            Width of the rows ``log_prob`` will see.
        pinned : Tensor of int64, shape (n_pinned,)
            Column indices modelled outside the flow.
        loc, scale : Tensor of shape (n_pinned,)
            Mean and (positive) standard deviation of each pinned column's Gaussian.
        """
        pinned = torch.as_tensor(pinned, dtype=torch.long)
        keep = torch.ones(n_features, dtype=torch.bool)
        keep[pinned] = False
        self.flow_columns = torch.nonzero(keep).flatten()
        self.pinned_columns = pinned.clone()
        self.pinned_loc = torch.as_tensor(loc, dtype=torch.float32).clone()
        self.pinned_scale = torch.as_tensor(scale, dtype=torch.float32).clone()

    def _flow_part(self, x: Tensor) -> Tensor:
        return x if self.flow_columns is None else x[:, self.flow_columns]

    def transform(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, log|det dz/dx|)`` of the columns the transforms model (all, unless pinned)."""
        x = self._flow_part(x)
        logdet = x.new_zeros(x.shape[0])
        for t in self.transforms:
            x, ld = t(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor) -> Tensor:
        """The columns the transforms model, from ``z``."""
        for t in reversed(self.transforms):
            z = t.inverse(z)
        return z

    def log_prob(self, x: Tensor) -> Tensor:
        z, logdet = self.transform(x)
        log_p = -0.5 * (z.pow(2).sum(dim=1) + z.shape[1] * _LOG_2PI) + logdet
        if self.pinned_columns is None or self.pinned_columns.numel() == 0:
            return log_p
        u = (x[:, self.pinned_columns] - self.pinned_loc) / self.pinned_scale
        pinned = -0.5 * (u.pow(2) + _LOG_2PI) - torch.log(self.pinned_scale)
        return log_p + pinned.sum(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.log_prob(x)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Data-dependent initialisation: each :class:`ActNorm` normalises what reaches it."""
        was_training = self.training
        self.eval()  # dropout off, so the statistics are those the flow sees at inference
        x = self._flow_part(x)
        for t in self.transforms:
            if isinstance(t, ActNorm):
                t.initialize(x)
            x, _ = t(x)
        self.train(was_training)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        param = next(self.parameters())
        z = torch.randn(n, self._features(), generator=generator, dtype=param.dtype)
        x_flow = self.inverse(z.to(param.device))
        if self.pinned_columns is None:
            return x_flow
        width = self.flow_columns.numel() + self.pinned_columns.numel()
        x = x_flow.new_empty(n, width)
        x[:, self.flow_columns] = x_flow
        noise = torch.randn(n, self.pinned_columns.numel(), generator=generator, dtype=param.dtype)
        x[:, self.pinned_columns] = self.pinned_loc + self.pinned_scale * noise.to(param.device)
        return x

    def _features(self) -> int:
        for t in self.transforms:
            if isinstance(t, ActNorm):
                return t.bias.numel()
            if isinstance(t, AffineCoupling):
                return t.d1 + t.d2
        raise ValueError("Cannot infer the flow's dimension.")


def glow_flow(
    features: int,
    n_blocks: int = 8,
    hidden_sizes: Sequence[int] = (512, 512, 512),
    dropout: float = 0.3,
    clamp: float = 3.0,
    coupling: str = "glow",
    permutation: str = "random",
    actnorm: bool = True,
    generator: torch.Generator | None = None,
) -> NormalizingFlow:
    """The QuantOD flow: ``n_blocks`` x (ActNorm -> permutation -> affine coupling).

    Parameters
    ----------
    features : int
        Dimension of the feature vectors (at least 2).
    n_blocks, hidden_sizes, dropout, clamp :
        Defaults of the authors' code: 8 blocks, subnets with three hidden activations of width
        512 (four Linear layers), dropout 0.3, soft clamp 3.0 (about 10 M parameters for 128-d
        features).
    coupling : {"glow", "realnvp", "nice", "gin"}
        The coupling block, see :class:`AffineCoupling` (Table 3 of the paper compares them).
    permutation : {"random", "reverse", "learned"}
        A fixed random permutation (the code), feature reversal, or a learned LU-decomposed
        invertible linear map (what the paper's text describes).
    actnorm : bool
        Whether each block starts with an :class:`ActNorm`.
    generator : torch.Generator, optional
        Source of the random permutations, so the architecture is reproducible.

    Examples
    --------
    >>> import torch
    >>> generator = torch.Generator().manual_seed(0)
    >>> flow = glow_flow(4, n_blocks=2, hidden_sizes=(16,), generator=generator)
    >>> flow = flow.eval()  # dropout off, so that inverse undoes transform
    >>> x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    >>> flow.initialize(x)  # data-dependent ActNorm initialisation
    >>> z, logdet = flow.transform(x)
    >>> z.shape, logdet.shape, flow(x).shape  # flow(x) is log p(x) per row
    (torch.Size([8, 4]), torch.Size([8]), torch.Size([8]))
    >>> bool(torch.allclose(flow.inverse(z), x, atol=1e-5))
    True
    """
    transforms: list[nn.Module] = []
    for _ in range(n_blocks):
        if actnorm:
            transforms.append(ActNorm(features))
        if permutation == "random":
            transforms.append(Permutation(torch.randperm(features, generator=generator)))
        elif permutation == "reverse":
            transforms.append(Permutation(torch.arange(features - 1, -1, -1)))
        elif permutation == "learned":
            transforms.append(LUPermutation(features, generator=generator))
        else:
            raise ValueError(f"Unknown permutation {permutation!r}.")
        transforms.append(AffineCoupling(features, hidden_sizes, dropout, clamp, coupling))
    return NormalizingFlow(transforms)
