"""Networks and losses of the adversarial mirrored autoencoder (AMA).

Somepalli, Wu, Balaji, Feizi, Goldstein. "Unsupervised Anomaly Detection with Adversarial
Mirrored AutoEncoders", UAI 2021. An encoder E and a decoder G are trained, without a pixel
loss, against a Wasserstein critic D that compares the *mirrored* pairs (x, x) (real) and
(x, G(E(x))) (fake), stacked on the channel / feature axis. The anomaly score is built from the
critic's penultimate features ``D.features(pair)``.

Architectures follow the authors' code (github.com/somepago/AMA, commit f68ad57): MLPs for
flat input, and for images a 4-layer conv encoder, an SNGAN residual decoder and an SNGAN
residual critic with spectral normalisation.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "AMALoss",
    "AMAModule",
    "ConvCritic",
    "ConvDecoder",
    "ConvEncoder",
    "LeakyMLPEncoder",
    "MLPCritic",
    "MLPDecoder",
    "SpectralNorm",
    "atypical_negatives",
    "gradient_penalty",
    "interpolate_codes",
    "mirrored_pair",
]


class SpectralNorm(nn.Module):
    """``layer`` with its weight divided by its largest singular value (Miyato et al., 2018).

    sigma is estimated by one power iteration per training forward pass, kept in the buffer
    ``u`` (the weight is flattened to ``(out, -1)`` for convolutions, as Miyato et al.). Written
    here because torch's parametrised spectral norm cannot be pickled, and every skood estimator
    must pickle.
    """

    def __init__(self, layer: nn.Module, eps: float = 1e-12) -> None:
        super().__init__()
        supported = isinstance(layer, nn.Linear) or (
            isinstance(layer, nn.Conv2d) and layer.padding_mode == "zeros"
        )
        if not supported:
            raise TypeError(f"SpectralNorm wraps nn.Linear or zero-padded nn.Conv2d, got {layer!r}.")
        self.layer = layer
        self.eps = eps
        out = layer.weight.shape[0]
        self.register_buffer("u", F.normalize(torch.randn(out), dim=0, eps=eps))

    def normalized_weight(self) -> Tensor:
        weight = self.layer.weight
        matrix = weight.reshape(weight.shape[0], -1)
        with torch.no_grad():
            u = self.u
            if self.training:
                v = F.normalize(matrix.T @ u, dim=0, eps=self.eps)
                u = F.normalize(matrix @ v, dim=0, eps=self.eps)
                self.u.copy_(u)
            v = F.normalize(matrix.T @ u, dim=0, eps=self.eps)
        sigma = u @ matrix @ v
        return weight / sigma

    def forward(self, x: Tensor) -> Tensor:
        # The layer's own operation with the normalised weight, rather than swapping the weight
        # into the layer: a swapped-in weight would be visible to a thread that pickles the
        # model meanwhile (Dask ships a model to another worker while one scores with it).
        weight, layer = self.normalized_weight(), self.layer
        if isinstance(layer, nn.Conv2d):
            return F.conv2d(
                x, weight, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups
            )
        return F.linear(x, weight, layer.bias)


def _sn(layer: nn.Module, use: bool) -> nn.Module:
    return SpectralNorm(layer) if use else layer


def mirrored_pair(x: Tensor, other: Tensor, image_shape: Sequence[int] | None) -> Tensor:
    """``x`` and ``other`` side by side: on the channel axis for images, the feature axis else.

    Rows arrive flattened (sklearn's 2-D X); with ``image_shape=(C, H, W)`` the pair is
    ``(n, 2C, H, W)`` with ``x``'s channels first, else ``(n, 2 * n_features)``.
    """
    if image_shape is None:
        return torch.cat([x.reshape(x.shape[0], -1), other.reshape(other.shape[0], -1)], dim=1)
    c, h, w = image_shape
    return torch.cat([x.reshape(-1, c, h, w), other.reshape(-1, c, h, w)], dim=1)


# -- MLPs (flat input) ---------------------------------------------------------------------------


class LeakyMLPEncoder(nn.Module):
    """An MLP ``n_features -> *hidden_sizes -> latent_dim``, LeakyReLU(0.2), linear output."""

    def __init__(self, n_features: int, hidden_sizes: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        layers.append(nn.Linear(width, latent_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], -1))


class MLPDecoder(nn.Module):
    """``latent_dim -> *reversed(hidden_sizes) -> n_features``, ReLU, linear output."""

    def __init__(self, n_features: int, hidden_sizes: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = latent_dim
        for h in reversed(tuple(hidden_sizes)):
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_features))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class MLPCritic(nn.Module):
    """An MLP ``in_features -> *hidden_sizes -> 1`` with LeakyReLU(0.2) and spectral normalisation.

    ``features`` is the last hidden activation (the critic's penultimate layer), the output a
    bias-free linear map of it.
    """

    def __init__(
        self, in_features: int, hidden_sizes: Sequence[int], spectral: bool = True
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden_sizes:
            layers += [_sn(nn.Linear(width, h), spectral), nn.LeakyReLU(0.2)]
            width = h
        self.body = nn.Sequential(*layers)
        self.out = _sn(nn.Linear(width, 1, bias=False), spectral)

    def features(self, pair: Tensor) -> Tensor:
        return self.body(pair.reshape(pair.shape[0], -1))

    def forward(self, pair: Tensor) -> Tensor:
        return self.out(self.features(pair)).reshape(-1)


# -- convolutional networks (images with sides >= 16, divisible by 8) ----------------------------


class ConvEncoder(nn.Module):
    """Three ``Conv4x4/s2 -> BatchNorm -> LeakyReLU(0.2)`` blocks (C -> 64 -> 128 -> 256), then a
    convolution over the remaining ``H/8 x W/8`` map to ``latent_dim``; no biases (the code's)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, width: int = 64) -> None:
        super().__init__()
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        chans = [c, width, 2 * width, 4 * width]
        blocks: list[nn.Module] = []
        for a, b in itertools.pairwise(chans):
            blocks += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2)]
        blocks.append(nn.Conv2d(chans[-1], latent_dim, (h // 8, w // 8), 1, 0, bias=False))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(-1, *self.image_shape)).reshape(x.shape[0], -1)


class _UpBlock(nn.Module):
    """SNGAN generator block: ``BN-ReLU-up2-conv3-BN-ReLU-conv3`` plus an upsampled shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1),
        )
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x) + self.up(x)


class ConvDecoder(nn.Module):
    """``Linear(latent -> H/8 * W/8 * ch)``, three up-ResBlocks, ``BN-ReLU-conv3 -> C``, tanh.

    The output lies in (-1, 1): scale the data there (``MinMaxScaler((-1, 1))``).
    """

    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: int = 256) -> None:
        super().__init__()
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        self.start = (channels, h // 8, w // 8)
        self.fc = nn.Linear(latent_dim, channels * (h // 8) * (w // 8))
        self.blocks = nn.Sequential(*[_UpBlock(channels) for _ in range(3)])
        self.out = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, c, 3, 1, 1), nn.Tanh()
        )

    def forward(self, z: Tensor) -> Tensor:
        x = self.fc(z).reshape(-1, *self.start)
        return self.out(self.blocks(x)).reshape(z.shape[0], -1)


class _CriticBlock(nn.Module):
    """SNGAN discriminator block (optionally the first, "optimized" one), spectral-normalised."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool, spectral: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [] if first else [nn.ReLU()]
        layers += [
            _sn(nn.Conv2d(c_in, c_out, 3, 1, 1), spectral),
            nn.ReLU(),
            _sn(nn.Conv2d(c_out, c_out, 3, 1, 1), spectral),
        ]
        if down:
            layers.append(nn.AvgPool2d(2))
        self.residual = nn.Sequential(*layers)
        shortcut: list[nn.Module] = []
        if first and down:
            shortcut = [nn.AvgPool2d(2), _sn(nn.Conv2d(c_in, c_out, 1), spectral)]
        elif c_in != c_out or down:
            shortcut = [_sn(nn.Conv2d(c_in, c_out, 1), spectral)]
            if down:
                shortcut.append(nn.AvgPool2d(2))
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x) + self.shortcut(x)


class ConvCritic(nn.Module):
    """SNGAN residual critic on a ``2C``-channel pair: OptimizedBlock(down), ResBlock(down),
    two ResBlocks, ReLU, global *sum* pool -> ``features`` (``ch``-d), bias-free ``Linear -> 1``."""

    def __init__(self, in_channels: int, image_hw: Sequence[int], ch: int = 128, spectral=True):
        super().__init__()
        self.in_shape = (in_channels, *image_hw)
        self.blocks = nn.Sequential(
            _CriticBlock(in_channels, ch, down=True, first=True, spectral=spectral),
            _CriticBlock(ch, ch, down=True, first=False, spectral=spectral),
            _CriticBlock(ch, ch, down=False, first=False, spectral=spectral),
            _CriticBlock(ch, ch, down=False, first=False, spectral=spectral),
            nn.ReLU(),
        )
        self.out = _sn(nn.Linear(ch, 1, bias=False), spectral)

    def features(self, pair: Tensor) -> Tensor:
        return self.blocks(pair.reshape(-1, *self.in_shape)).sum(dim=(2, 3))

    def forward(self, pair: Tensor) -> Tensor:
        return self.out(self.features(pair)).reshape(-1)


# -- the three networks together ----------------------------------------------------------------


class AMAModule(nn.Module):
    """Encoder, decoder and critic; the critic sees mirrored pairs (or single inputs).

    Parameters
    ----------
    encoder, decoder : nn.Module
        x (flattened) -> z and z -> x (flattened).
    critic : nn.Module
        With a ``features(pair)`` method (the penultimate activations) and ``forward(pair)``
        giving one value per row.
    image_shape : tuple or None
        How a flat row is laid out as an image, for stacking pairs on the channel axis.
    mirrored : bool, default=True
        False is the paper's "-mirrored" ablation: the critic sees x (real) or x_hat (fake) alone.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        critic: nn.Module,
        image_shape: Sequence[int] | None = None,
        mirrored: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.critic = critic
        self.image_shape = None if image_shape is None else tuple(image_shape)
        self.mirrored = mirrored

    def pair(self, x: Tensor, other: Tensor) -> Tensor:
        """The critic's input for ``(x, other)``: the mirrored pair, or ``other`` alone."""
        if not self.mirrored:
            return other.reshape(other.shape[0], -1)
        return mirrored_pair(x, other, self.image_shape)

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction ``G(E(x))``, flattened like ``x``."""
        return self.decoder(self.encoder(x)).reshape(x.shape[0], -1)

    def r_score(self, x: Tensor) -> Tensor:
        """Eq. 5: ``||f(x, x) - f(x, G(E(x)))||_1`` with f the critic's penultimate features."""
        x = x.reshape(x.shape[0], -1)
        real = self.critic.features(self.pair(x, x))
        fake = self.critic.features(self.pair(x, self(x)))
        return (real - fake).abs().reshape(x.shape[0], -1).sum(dim=1)


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP: ``mean((||grad D(u real + (1 - u) fake)||_2 - 1)^2)``, one u ~ U(0, 1) per row.

    The gradient norm is taken over each row's whole (flattened) input, as in Gulrajani et al.;
    the AMA authors' code takes it over the channel axis only, which penalises a different norm.
    """
    u = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype)
    mixed = (u * real + (1 - u) * fake).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.reshape(grad.shape[0], -1).norm(2, dim=1) - 1).pow(2).mean()


# -- the objective (eqs. 2-4 as the authors' code implements them) -------------------------------


def interpolate_codes(codes: Tensor, n_anchors: int = 3) -> tuple[Tensor, Tensor]:
    """Simplex interpolation of latent codes: ``(anchor indices (k, n), mixed codes (n, d))``.

    Row i mixes the codes of ``k`` anchors (itself and ``k - 1`` random permutations of the batch)
    with weights ``alpha_j ~ U(0, 0.5)`` normalised to sum to one (the paper's form).
    """
    n = codes.shape[0]
    anchors = torch.stack(
        [torch.arange(n, device=codes.device)]
        + [torch.randperm(n, device=codes.device) for _ in range(n_anchors - 1)]
    )
    alpha = torch.rand(n_anchors, n, 1, device=codes.device, dtype=codes.dtype) * 0.5
    alpha = alpha / alpha.sum(dim=0, keepdim=True)
    return anchors, (alpha * codes[anchors]).sum(dim=0)


def atypical_negatives(
    module: AMAModule, x: Tensor, n_neg: int, direction: str, delta: float
) -> Tensor:
    """Synthetic negatives ``G(z_neg)``, made in eval mode without gradient.

    ``"inward"``: ``z_neg = s E(x_j)`` with ``s ~ U(1 - delta, 1)``; ``"outward"``: ``s ~ U(1,
    1 + delta)`` (the paper's shell just inside / outside the normal codes; the scale is bounded
    because the paper's unbounded form can put negatives arbitrarily far); ``"origin"``:
    Sipple's negatives, each coordinate ``~ U(0, m)`` with ``m`` the smallest code norm in the
    batch. ``x_j`` are ``n_neg`` random rows of ``x``.
    """
    was_training = module.training
    module.eval()
    with torch.no_grad():
        codes = module.encoder(x[torch.randint(x.shape[0], (n_neg,), device=x.device)])
        if direction == "origin":
            m = module.encoder(x).norm(dim=1).min()
            z = torch.rand_like(codes) * m
        else:
            s = torch.rand(n_neg, 1, device=x.device, dtype=x.dtype) * delta
            z = codes * (1 - s if direction == "inward" else 1 + s)
        negatives = module.decoder(z).reshape(n_neg, -1)
    module.train(was_training)
    return negatives


class AMALoss(nn.Module):
    """The critic's and the encoder-decoder's losses of AMA.

    For a batch ``x`` with weights ``w`` (+1 for normal rows, ``-lambda_neg`` for synthetic
    negatives), ``x_hat = G(E(x))`` and ``D(a, b)`` the critic on the pair:

    * critic (minimised): ``mean w (D(x, x_hat) - D(x, x)) + lambda_inter * mean_j mean
      (D(x_j, x_int) - D(x_j, x_j)) + lambda_gp * GP``, with ``x_int`` the decoded simplex mix of
      the normal rows' codes and ``x_j`` its anchors;
    * encoder + decoder (minimised): ``-mean w D(x, x_hat) + lambda_reg * mean ||E(x)||_2
      [- lambda_inter * mean_j mean D(x_j, x_int)] + lambda_rec * mean |x - x_hat|``, the bracket
      only with ``interp_update_generator`` (the paper's min over G; the code detaches it), with
      the codes detached so it trains the decoder only. ``lambda_rec`` is not in the paper.
    """

    def __init__(
        self,
        lambda_inter: float = 0.5,
        lambda_reg: float = 1.0,
        lambda_gp: float = 10.0,
        lambda_rec: float = 0.0,
        n_interp: int = 3,
        interp_update_generator: bool = True,
    ) -> None:
        super().__init__()
        self.lambda_inter = lambda_inter
        self.lambda_reg = lambda_reg
        self.lambda_gp = lambda_gp
        self.lambda_rec = lambda_rec
        self.n_interp = n_interp
        self.interp_update_generator = interp_update_generator

    def _interp(self, module: AMAModule, x: Tensor, codes: Tensor, train_critic: bool) -> Tensor:
        anchors, z = interpolate_codes(codes.detach(), self.n_interp)
        x_int = module.decoder(z).reshape(x.shape[0], -1)
        if train_critic:
            x_int = x_int.detach()
        terms = []
        for idx in anchors:
            xa = x[idx]
            fake = module.critic(module.pair(xa, x_int))
            terms.append(fake - module.critic(module.pair(xa, xa)) if train_critic else -fake)
        return torch.stack(terms).mean()

    def critic_loss(self, module: AMAModule, x: Tensor, weights: Tensor) -> Tensor:
        with torch.no_grad():
            codes = module.encoder(x)
            x_hat = module.decoder(codes).reshape(x.shape[0], -1)
        real, fake = module.pair(x, x), module.pair(x, x_hat)
        loss = (weights * (module.critic(fake) - module.critic(real))).mean()
        normal = weights > 0
        if self.lambda_inter > 0 and normal.sum() > 1:
            loss = loss + self.lambda_inter * self._interp(
                module, x[normal], codes[normal], train_critic=True
            )
        if self.lambda_gp > 0:
            loss = loss + self.lambda_gp * gradient_penalty(module.critic, real, fake)
        return loss

    def generator_loss(self, module: AMAModule, x: Tensor, weights: Tensor) -> Tensor:
        codes = module.encoder(x)
        x_hat = module.decoder(codes).reshape(x.shape[0], -1)
        loss = -(weights * module.critic(module.pair(x, x_hat))).mean()
        normal = weights > 0
        loss = loss + self.lambda_reg * codes[normal].norm(dim=1).mean()
        if self.interp_update_generator and self.lambda_inter > 0 and normal.sum() > 1:
            loss = loss + self.lambda_inter * self._interp(
                module, x[normal], codes[normal], train_critic=False
            )
        if self.lambda_rec > 0:
            loss = loss + self.lambda_rec * (x[normal] - x_hat[normal]).abs().mean()
        return loss


def __getattr__(name: str):
    from skood._compat import moved_class

    return moved_class(__name__, name)  # a class an older skood named here
