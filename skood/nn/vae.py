r"""Variational autoencoder with a Gaussian decoder and a deterministic per-sample ELBO.

The VAE is the likelihood model of the ROSE paper's main tables (Choi et al., "Robust
Out-of-Distribution Detection on Deep Probabilistic Generative Models"); its score is a
per-sample bound on :math:`\log p(x)`:

.. math::
    \mathrm{ELBO}(x) = \frac1K \sum_{k=1}^K \log p(x \mid z_k) - \mathrm{KL}(q(z\mid x)\,\|\,p(z)),
    \qquad z_k = \mu(x) + \sigma(x) \odot \varepsilon_k,

and the importance-weighted bound (IWAE) :math:`\log \frac1K \sum_k p(x, z_k) / q(z_k \mid x)`.

At inference the noise :math:`\varepsilon_1 \dots \varepsilon_K` is a *fixed* buffer drawn once
when the module is built and shared by every row ("common random numbers"). So
:meth:`VAE.log_prob` is a deterministic, differentiable function of ``x`` and the parameters: a
row's score does not depend on which other rows share its batch, and per-sample gradients of it
(what ROSE needs) are well defined. Training draws fresh noise each step.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["VAE", "conv_vae_networks", "mlp_vae_networks"]

_LOG_2PI = math.log(2 * math.pi)


def mlp_vae_networks(
    n_features: int, latent_dim: int, hidden_sizes: Sequence[int] = (128,)
) -> tuple[nn.Module, nn.Module]:
    """MLP encoder ``x -> [mu, log_var]`` (width ``2 * latent_dim``) and decoder ``z -> mean``."""

    def stack(sizes: list[int]) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(sizes[:-1]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        return [*layers, nn.Linear(sizes[-2], sizes[-1])]

    hidden = list(hidden_sizes)
    encoder = nn.Sequential(*stack([n_features, *hidden, 2 * latent_dim]))
    decoder = nn.Sequential(*stack([latent_dim, *reversed(hidden), n_features]))
    return encoder, decoder


def conv_depth(image_shape: Sequence[int]) -> int:
    """Stride-2 convolutions the conv VAE uses: up to 4 (the paper's), ending at >= 2 x 2."""
    _, h, w = image_shape
    depth = 0
    while depth < 4 and min(h, w) % 2 ** (depth + 1) == 0 and min(h, w) // 2 ** (depth + 1) >= 2:
        depth += 1
    return depth


def conv_vae_networks(
    image_shape: Sequence[int], latent_dim: int, width: int = 32
) -> tuple[nn.Module, nn.Module]:
    """The ROSE paper's conv VAE: kernel-4 stride-2 convolutions without bias, widths doubling.

    The paper uses four convolutions on 32 x 32 images; smaller images get as many as keep the
    last feature map at least 2 x 2 (two on 8 x 8 digits). The decoder mirrors the encoder with
    transposed convolutions. Both take and return *flattened* rows (sklearn's 2-D ``X``).
    """
    c, h, w = (int(s) for s in image_shape)
    depth = conv_depth((c, h, w))
    if depth == 0:
        raise ValueError(
            f"image_shape={tuple(image_shape)} is too small for the conv VAE: it needs sides "
            "divisible by 2 and at least 4 pixels. Use the MLP networks."
        )
    widths = [width * 2**i for i in range(depth)]
    fh, fw = h // 2**depth, w // 2**depth
    enc: list[nn.Module] = [nn.Unflatten(1, (c, h, w))]
    for n_in, n_out in zip([c, *widths[:-1]], widths, strict=True):
        enc += [nn.Conv2d(n_in, n_out, 4, stride=2, padding=1, bias=False), nn.LeakyReLU(0.2)]
    enc += [nn.Flatten(), nn.Linear(widths[-1] * fh * fw, 2 * latent_dim)]
    dec: list[nn.Module] = [
        nn.Linear(latent_dim, widths[-1] * fh * fw),
        nn.LeakyReLU(0.2),
        nn.Unflatten(1, (widths[-1], fh, fw)),
    ]
    rev = list(reversed(widths))
    for n_in, n_out in itertools.pairwise(rev):
        dec += [nn.ConvTranspose2d(n_in, n_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
    dec += [nn.ConvTranspose2d(rev[-1], c, 4, stride=2, padding=1), nn.Flatten()]
    return nn.Sequential(*enc), nn.Sequential(*dec)


class VAE(nn.Module):
    r"""Gaussian VAE: :math:`q(z|x) = N(\mu, \sigma^2)`, :math:`p(x|z) = N(\mathrm{dec}(z), s^2)`.

    Parameters
    ----------
    encoder : nn.Module
        Maps ``(n, n_features)`` to ``(n, 2 * latent_dim)``: the posterior mean and log-variance.
    decoder : nn.Module
        Maps ``(n, latent_dim)`` to the decoded mean ``(n, n_features)``.
    n_features, latent_dim : int
    n_mc_samples : int, default=8
        Noise draws ``K`` of the scoring bound (fixed, see the module docstring).
    iwae : bool, default=False
        Score with the importance-weighted bound instead of the ELBO.
    min_scale : float, default=1e-3
        Floor of the per-feature decoder standard deviation :math:`s = s_{min} +
        \mathrm{softplus}(r)`: a column that never varies would otherwise drive ``s`` to 0 and
        the likelihood to infinity.
    generator : torch.Generator or None
        Draws the fixed scoring noise.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        n_features: int,
        latent_dim: int,
        n_mc_samples: int = 8,
        iwae: bool = False,
        min_scale: float = 1e-3,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.latent_dim, self.iwae, self.min_scale = latent_dim, iwae, min_scale
        # softplus(r) + min_scale = 1 at the start.
        raw = math.log(math.expm1(1.0 - min_scale))
        self.scale_raw = nn.Parameter(torch.full((n_features,), raw))
        self.register_buffer("noise", torch.randn(n_mc_samples, latent_dim, generator=generator))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance, each ``(n, latent_dim)``."""
        mu, log_var = self.encoder(x).chunk(2, dim=-1)
        return mu, log_var

    def decoder_scale(self) -> Tensor:
        return self.min_scale + F.softplus(self.scale_raw)

    def _log_px_given_z(self, x: Tensor, z: Tensor) -> Tensor:
        """``log p(x | z)`` for ``z`` of shape ``(n, K, latent)``; returns ``(n, K)``."""
        n, k, _ = z.shape
        mean = self.decoder(z.reshape(n * k, -1)).reshape(n, k, -1)
        scale = self.decoder_scale()
        resid = (x.unsqueeze(1) - mean) / scale
        return -0.5 * (resid.pow(2) + _LOG_2PI).sum(-1) - torch.log(scale).sum()

    def bound(self, x: Tensor, eps: Tensor, iwae: bool = False) -> Tensor:
        """Per-sample ELBO (or IWAE bound) with the noise ``eps`` of shape ``(K, latent)`` or
        ``(n, K, latent)``; returns ``(n,)``."""
        mu, log_var = self.encode(x)
        std = torch.exp(0.5 * log_var)
        eps = eps.expand(x.shape[0], *eps.shape[-2:]) if eps.dim() == 2 else eps
        z = mu.unsqueeze(1) + std.unsqueeze(1) * eps
        log_px = self._log_px_given_z(x, z)
        if not iwae:
            kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1)
            return log_px.mean(1) - kl
        log_pz = -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)
        log_qz = -0.5 * (eps.pow(2) + _LOG_2PI).sum(-1) - 0.5 * log_var.sum(-1, keepdim=True)
        return torch.logsumexp(log_px + log_pz - log_qz, dim=1) - math.log(z.shape[1])

    def log_prob(self, x: Tensor) -> Tensor:
        """The scoring bound with the fixed noise: deterministic and differentiable, ``(n,)``."""
        return self.bound(x, self.noise, self.iwae)

    def forward(self, x: Tensor) -> Tensor:
        """Training: a one-draw ELBO with fresh noise. Eval: :meth:`log_prob`."""
        if not self.training:
            return self.log_prob(x)
        eps = torch.randn(x.shape[0], 1, self.latent_dim, device=x.device, dtype=x.dtype)
        return self.bound(x, eps)
