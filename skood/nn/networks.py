"""Classifier networks whose penultimate features feed a detector (QuantOD's stage 1).

Every network here takes 2-D input (rows are flattened samples, as sklearn requires), returns
logits from ``forward`` and the penultimate activations from ``features``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["MLPClassifierNet", "SmallCNN"]


class MLPClassifierNet(nn.Module):
    """``[Linear -> ReLU -> Dropout] * len(hidden_sizes) -> Linear(n_classes)``.

    ``features(x)`` is the output of the last hidden block (after ReLU and dropout).
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

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class SmallCNN(nn.Module):
    """A small CNN for images that arrive flattened: ``x.view(-1, C, H, W)`` first.

    Two ``Conv3x3 -> ReLU -> Conv3x3 -> ReLU -> MaxPool2`` stages (widths ``channels``), then
    ``Linear -> ReLU -> Dropout`` to ``hidden_size`` penultimate features and a linear head. Sized
    for sklearn's 8x8 digits; any ``(C, H, W)`` with ``H, W >= 4`` works.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        n_classes: int,
        channels: Sequence[int] = (32, 64),
        hidden_size: int = 128,
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
            nn.Flatten(), nn.Linear(c * h * w, hidden_size), nn.ReLU(), nn.Dropout(dropout)
        )
        self.head = nn.Linear(hidden_size, n_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x.reshape(-1, *self.image_shape)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
