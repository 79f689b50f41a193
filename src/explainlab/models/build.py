"""One entry point that builds any model of the `model` config group."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
import torchvision
from torch import nn

from explainlab.errors import check_choice
from explainlab.models.cifar_resnet import CIFAR_RESNET_DEPTHS, cifar_resnet
from explainlab.models.layers import resolve_layers
from explainlab.models.loading import load_weights, pretrained_path
from explainlab.models.mnist_nets import LeNetClassic, MnistCNN, SmallCNN
from explainlab.models.pixel_space import PixelSpaceModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TORCHVISION_MODELS = (
    "alexnet",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "inception_v3",
    "squeezenet1_0",
    "squeezenet1_1",
)
# Builder arguments for untrained torchvision models: Inception V3 without its auxiliary classifier,
# so that training sees plain logits (with weights torchvision insists on building it; see below).
_UNTRAINED_KWARGS = {"inception_v3": {"aux_logits": False, "init_weights": True}}

_LOCAL: dict[str, Callable[..., nn.Module]] = {
    "mnist_cnn": lambda num_classes, in_channels, image_size: MnistCNN(num_classes, in_channels),
    "lenet_classic": lambda num_classes, in_channels, image_size: LeNetClassic(num_classes, in_channels),
    "small_cnn": lambda num_classes, in_channels, image_size: SmallCNN(num_classes, in_channels, image_size),
    **{
        name: (lambda num_classes, in_channels, image_size, _n=name: cifar_resnet(_n, num_classes, in_channels))
        for name in CIFAR_RESNET_DEPTHS
    },
}

MODEL_NAMES = (*_LOCAL, *TORCHVISION_MODELS)


def build_model(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 28,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    pretrained: str | None = None,
    checkpoint: str | None = None,
    weights: str | None = None,
    taps: Sequence[str] = (),
    channels_last: bool | str = False,
    cache_dir: str | os.PathLike = ".cache",
    models_dir: str | None = None,
) -> PixelSpaceModel:
    """Build `name` wrapped in pixel-space normalisation, optionally with trained weights.

    pretrained: published weights by source (`akamaster` for the CIFAR ResNets).
    checkpoint: path of any local weights file (ours, akamaster's, or a Lightning .ckpt).
    weights: torchvision weights enum name (e.g. DEFAULT) for the torchvision models (downloads).
    taps: layer names later methods read; validated here so a typo fails before any work.
    channels_last: store conv weights channels-last (faster convolutions on GPUs, esp. with bf16);
        'auto' leaves the choice to training, per device (`runner.classifier.ClassifierModule`).
    """
    check_choice("model.name", name, MODEL_NAMES)
    check_choice("model.channels_last", channels_last, ("auto", True, False))
    if name in TORCHVISION_MODELS:
        kwargs = {} if weights else {"num_classes": num_classes, **_UNTRAINED_KWARGS.get(name, {})}
        net = torchvision.models.get_model(name, weights=weights, **kwargs)
        if getattr(net, "AuxLogits", None) is not None:
            net.aux_logits, net.AuxLogits = False, None
    else:
        net = _LOCAL[name](num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(
            f"model.mean/model.std need {in_channels} values (one per channel), got {list(mean)} and {list(std)}."
        )
    if pretrained:
        load_weights(net, pretrained_path(name, pretrained, cache_dir=cache_dir, search_dir=models_dir))
    if checkpoint:
        load_weights(net, checkpoint)
    model = PixelSpaceModel(net, mean, std, name=name)
    resolve_layers(model, taps, key="model.taps")
    if channels_last is True:  # 'auto' is decided where the device is known (training, attacks)
        model = model.to(memory_format=torch.channels_last)
    return model


def pretrained_cifar_resnet(
    name: str, *, models_dir: str | None = None, cache_dir: str | os.PathLike = ".cache"
) -> PixelSpaceModel:
    """A CIFAR ResNet with akamaster's published weights and the ImageNet normalisation they were
    trained with (looked up in `models_dir`, $EXPLAINLAB_MODELS, the cache, else downloaded)."""
    return build_model(
        name,
        num_classes=10,
        in_channels=3,
        image_size=32,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        pretrained="akamaster",
        cache_dir=cache_dir,
        models_dir=models_dir,
    )
