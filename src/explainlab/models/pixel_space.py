"""Models that take images in [0, 1] pixel space and normalise inside the network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """(x - mean) / std per channel; x: (B, C, H, W) in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class PixelSpaceModel(nn.Module):
    """Wraps a classifier `net` so that inputs are pixels in [0, 1]: `net(normalize(x))`.

    Layer names used in configs (taps, Grad-CAM layers, ...) are names inside `net`; see
    `explainlab.models.layers`.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], name: str = "") -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        self.arch = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))
