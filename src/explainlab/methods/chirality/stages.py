"""The five stages of paper 000 (Tables I-II), and the stretched x positions of Fig. 5.

ResNets: the stem (conv1) is stage 1, `layer1..4` are stages 2-5 (the CIFAR ResNets have three
stages: 2-4). VGG: stages end at each max-pool of `features`. AlexNet: one conv per stage. Any
other model: each flippable conv layer is its own stage, in order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn
from torchvision.models import VGG, AlexNet

from explainlab.models.layers import unwrap

from .similarity import flippable_convs

FAMILIES = ("alexnet", "vgg", "resnet", "cifar_resnet", "other")


def model_family(model: nn.Module) -> str:
    """'alexnet', 'vgg', 'resnet' (torchvision, 4 stages of blocks), 'cifar_resnet' (3 stages) or 'other'."""
    net = unwrap(model)
    if isinstance(net, AlexNet):
        return "alexnet"
    if isinstance(net, VGG):
        return "vgg"
    if hasattr(net, "layer1") and hasattr(net, "layer3"):
        return "resnet" if hasattr(net, "layer4") else "cifar_resnet"
    return "other"


def layer_stages(model: nn.Module) -> dict[str, int]:
    """Stage (1-based) of every flippable conv layer of `model`, by the rules in the module docstring."""
    names = list(flippable_convs(model))
    family = model_family(model)
    if family in ("resnet", "cifar_resnet"):
        stages = {}
        for name in names:
            match = re.match(r"layer(\d+)\.", name)
            stages[name] = int(match.group(1)) + 1 if match else 1
        return stages
    if family == "vgg":
        stage, stages = 1, {}
        for name, module in unwrap(model).features.named_children():
            if isinstance(module, nn.MaxPool2d):
                stage += 1
            elif f"features.{name}" in names:
                stages[f"features.{name}"] = stage
        return stages
    return {name: i + 1 for i, name in enumerate(names)}


def analysed_stage(family: str, stage: int) -> bool:
    """The paper leaves the ResNet stem (stage 1) out of its analysis."""
    return not (family in ("resnet", "cifar_resnet") and stage == 1)


def stretched_positions(stages: Sequence[int]) -> list[float]:
    """x position of each layer for Fig. 5: the layers of stage s spread evenly over (s − 1, s),
    so models with different numbers of layers per stage can be overlaid."""
    counts: dict[int, int] = {}
    for s in stages:
        counts[s] = counts.get(s, 0) + 1
    seen: dict[int, int] = {}
    positions = []
    for s in stages:
        i = seen.get(s, 0)
        seen[s] = i + 1
        positions.append(s - 1 + (i + 0.5) / counts[s])
    return positions
