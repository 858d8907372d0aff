"""Networks that take 2-D input (rows are flattened samples, as sklearn requires).

* Classifiers whose penultimate features feed a detector (QuantOD's stage 1): ``forward`` returns
  logits and ``features`` the penultimate activations.
* Encoders of the outlier-exposure family (hypersphere classifier, Deep SAD / SVDD, BCE / focal
  outlier exposure): ``forward`` returns a representation phi(x).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = [
    "BackboneClassifier",
    "FeaturesOf",
    "LeNetEncoder",
    "MLPClassifierNet",
    "MLPEncoder",
    "OENetwork",
    "SmallCNN",
]


class MLPClassifierNet(nn.Module):
    """``[Linear -> ReLU -> Dropout] * len(hidden_sizes) -> Linear(n_classes)``.

    ``features(x)`` is the output of the last hidden block (after ReLU and dropout), or with
    ``pre_activation=True`` that block's Linear output, before its ReLU.
    """

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        hidden_sizes: Sequence[int] = (128,),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def features(self, x: Tensor, pre_activation: bool = False) -> Tensor:
        return self.features_and_logits(x, pre_activation)[0]

    def features_and_logits(self, x: Tensor, pre_activation: bool = False) -> tuple[Tensor, Tensor]:
        """Penultimate features and logits from one forward pass."""
        pre = self.body[:-2](x)  # everything up to the last hidden Linear
        post = self.body[-2:](pre)  # its ReLU and dropout
        return (pre if pre_activation else post), self.head(post)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class SmallCNN(nn.Module):
    """A small CNN for images that arrive flattened: ``x.view(-1, C, H, W)`` first.

    Two ``Conv3x3 -> ReLU -> Conv3x3 -> ReLU -> MaxPool2`` stages (widths ``channels``), then
    ``Linear -> ReLU -> Dropout`` to ``feature_dim`` penultimate features and a linear head. Sized
    for sklearn's 8x8 digits; any ``(C, H, W)`` with ``H, W >= 4`` works. ``features(x,
    pre_activation=True)`` is the penultimate Linear's output, before its ReLU.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        n_classes: int,
        channels: Sequence[int] = (32, 64),
        feature_dim: int = 128,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        blocks: list[nn.Module] = []
        for out in channels:
            blocks += [
                nn.Conv2d(c, out, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(out, out, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c, h, w = out, h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(
                f"image_shape {tuple(image_shape)} is too small for {len(channels)} poolings."
            )
        self.conv = nn.Sequential(*blocks)
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, feature_dim), nn.ReLU(), nn.Dropout(dropout)
        )
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: Tensor, pre_activation: bool = False) -> Tensor:
        return self.features_and_logits(x, pre_activation)[0]

    def features_and_logits(self, x: Tensor, pre_activation: bool = False) -> tuple[Tensor, Tensor]:
        """Penultimate features and logits from one forward pass."""
        pre = self.fc[:2](self.conv(x.reshape(-1, *self.image_shape)))  # Flatten, Linear
        post = self.fc[2:](pre)  # ReLU, Dropout
        return (pre if pre_activation else post), self.head(post)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.fc(self.conv(x.reshape(-1, *self.image_shape))))


# -- encoders for the outlier-exposure family (Liznerski et al., TMLR 2022) ---------------------


class MLPEncoder(nn.Module):
    """``[Linear -> LeakyReLU] * len(hidden_sizes) -> Linear(feature_dim)``: a representation.

    The representation phi(x) of the outlier-exposure methods.

    ``bias=False`` removes every bias, which keeps Deep SVDD from the trivial constant solution
    (Ruff et al., 2018).
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int] = (128, 64),
        feature_dim: int = 32,
        bias: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden_sizes:
            layers += [nn.Linear(width, h, bias=bias), nn.LeakyReLU(0.1)]
            width = h
        layers.append(nn.Linear(width, feature_dim, bias=bias))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class LeNetEncoder(nn.Module):
    """The paper's LeNet-style network for images that arrive flattened.

    Per stage ``Conv5x5(pad 2) -> BatchNorm -> LeakyReLU -> MaxPool2``, then ``Linear(fc) ->
    BatchNorm -> LeakyReLU -> Linear(feature_dim)``. The authors' code uses channels (16, 32),
    fc 64, feature_dim 32 for 28x28 grey images and (32, 64, 128), fc 512, feature_dim 256 for
    32x32 colour ones; ``channels=None`` picks by the number of input channels. ``bias=False`` removes biases
    and BatchNorm's affine parameters (Deep SVDD).
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        feature_dim: int | None = None,
        channels: Sequence[int] | None = None,
        fc: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        colour = c == 3
        channels = tuple(channels or ((32, 64, 128) if colour else (16, 32)))
        fc = fc or (512 if colour else 64)
        feature_dim = feature_dim or (256 if colour else 32)
        self.image_shape = tuple(image_shape)
        blocks: list[nn.Module] = []
        for out in channels:
            blocks += [
                nn.Conv2d(c, out, 5, padding=2, bias=bias),
                nn.BatchNorm2d(out, affine=bias),
                nn.LeakyReLU(0.1),
                nn.MaxPool2d(2),
            ]
            c, h, w = out, h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(
                f"image_shape {tuple(image_shape)} is too small for {len(channels)} poolings; "
                "pass fewer channels."
            )
        self.conv = nn.Sequential(*blocks)
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, fc, bias=bias),
            nn.BatchNorm1d(fc, affine=bias),
            nn.LeakyReLU(0.1),
            nn.Linear(fc, feature_dim, bias=bias),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x.reshape(-1, *self.image_shape)))


class OENetwork(nn.Module):
    """An encoder phi, minus a fixed centre (Deep SVDD), or followed by a logit head (BCE / focal).

    The output is ``phi(x) - center`` (a representation), or ``head(phi(x))`` squeezed to a logit
    when ``logit_head=True``.
    """

    def __init__(self, encoder: nn.Module, logit_head: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.LazyLinear(1) if logit_head else None
        self.register_buffer("center", None)

    def set_center(self, center: Tensor) -> None:
        self.center = center.detach().clone()

    def forward(self, x: Tensor) -> Tensor:
        z = self.encoder(x)
        if self.head is not None:
            return self.head(z.reshape(z.shape[0], -1)).reshape(-1)
        return z if self.center is None else z - self.center


# -- a backbone and a classification head (ICE and its baselines) ------------------------------


class BackboneClassifier(nn.Module):
    """``head(backbone(x))``: ``features(x)`` is the backbone's output flattened to (n, d).

    The head is any module from features to logits: ``nn.Linear`` or
    :class:`skood.nn.GaussianHead`.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, x: Tensor) -> Tensor:
        z = self.backbone(x)
        return z.reshape(z.shape[0], -1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class FeaturesOf(nn.Module):
    """The feature map of a trained classifier, as a backbone to train further (fine-tuning).

    ``forward(x)`` is ``network.features(x)``, or, with ``layer``, the output of that named
    submodule during ``network(x)`` (read with a forward hook), flattened to (n, d).
    """

    def __init__(self, network: nn.Module, layer: str | None = None) -> None:
        super().__init__()
        self.network = network
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        if self.layer is None:
            z = self.network.features(x)
            return z.reshape(z.shape[0], -1)
        captured: list[Tensor] = []
        module = dict(self.network.named_modules())[self.layer]
        handle = module.register_forward_hook(lambda m, i, o: captured.append(o))
        try:
            self.network(x)
        finally:
            handle.remove()
        return captured[0].reshape(x.shape[0], -1)
