"""The initialisations of paper 000's Fig. 4, applied to conv weights only (S reads nothing else)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .similarity import flippable_convs

# "default" (not listed) is the architecture's own initialisation, i.e. the model as its constructor
# leaves it.
INITS: dict[str, Callable[[torch.Tensor, torch.Generator], Any]] = {
    "kaiming_normal": lambda w, g: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", generator=g),
    "xavier_normal": lambda w, g: nn.init.xavier_normal_(w, generator=g),
    "normal": lambda w, g: nn.init.normal_(w, 0.0, 0.01, generator=g),
    "kaiming_uniform": lambda w, g: nn.init.kaiming_uniform_(w, a=5**0.5, generator=g),
}


def conv_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """{layer: kernel weights (K, C, h, w)} of every flippable conv of `model` (detached)."""
    return {name: conv.weight.detach() for name, conv in flippable_convs(model).items()}


def reinitialised(weights: Mapping[str, torch.Tensor], init: str, seed: int) -> dict[str, torch.Tensor]:
    """Fresh conv weights of the same shapes drawn by `init` (a key of INITS) from one seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, weight in weights.items():
        fresh = torch.empty(weight.shape, dtype=torch.float32)
        INITS[init](fresh, generator)
        out[name] = fresh
    return out
