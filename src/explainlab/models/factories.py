"""Models by name, trained or untrained, outside the run's own `model` config (studies that compare
several architectures: chirality, heat maps)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from explainlab.errors import ConfigValueError, ExplainlabError
from explainlab.models.build import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHVISION_MODELS,
    build_model,
    pretrained_cifar_resnet,
)
from explainlab.models.cifar_resnet import CIFAR_RESNET_DEPTHS

# Where published weights come from: torchvision's hub (ImageNet) and akamaster's CIFAR ResNets.
PUBLISHED_SOURCES = ("torchvision", "akamaster")


def build_untrained(name: str) -> nn.Module:
    """`name` of the model group with its constructor's initialisation (seed the RNG first):
    torchvision models for 1000 classes at 224 px, CIFAR ResNets for 10 classes at 32 px, the small
    nets for 10 classes of 28x28 grey images."""
    if name in TORCHVISION_MODELS:
        return build_model(name, num_classes=1000, in_channels=3, image_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    if name in CIFAR_RESNET_DEPTHS:
        return build_model(name, num_classes=10, in_channels=3, image_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return build_model(name, num_classes=10, in_channels=1, image_size=28)


def build_trained(name: str, source: str, paths: Mapping[str, Any]) -> nn.Module:
    """Trained weights of `name` from `source` ('torchvision': weights=DEFAULT, downloaded into the
    torch hub cache; 'akamaster': the published CIFAR ResNets). paths: `cfg.paths` (models_dir,
    cache_dir). Raises ExplainlabError with what to download and where when the weights cannot be had."""
    if source == "torchvision":
        import torchvision

        try:
            return build_model(name, num_classes=1000, in_channels=3, image_size=224, weights="DEFAULT",
                               mean=IMAGENET_MEAN, std=IMAGENET_STD)  # fmt: skip
        except (OSError, RuntimeError) as err:  # URLError is an OSError
            url = torchvision.models.get_model_weights(name).DEFAULT.url
            hub = f"{torch.hub.get_dir()}/checkpoints/"
            raise ExplainlabError(f"no torchvision weights for {name} offline: put {url} into {hub} ({err})") from err
    if source == "akamaster":
        return pretrained_cifar_resnet(name, models_dir=paths.get("models_dir"), cache_dir=paths["cache_dir"])
    raise ConfigValueError("method.models[].trained", source, f"one of {PUBLISHED_SOURCES}")
