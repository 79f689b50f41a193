"""The layers paper 002's analysis uses per architecture when the config leaves them null."""

from __future__ import annotations

from explainlab.errors import ConfigValueError
from explainlab.models.cifar_resnet import CIFAR_RESNET_DEPTHS

# (regional layers, sample layer)
_DEFAULT_LAYERS = {
    **{n: (["layer1", "layer2", "layer3"], "layer3") for n in CIFAR_RESNET_DEPTHS},
    **{f"resnet{d}": (["layer2", "layer3", "layer4"], "layer4") for d in (18, 34, 50, 101, 152)},
    **{n: (["conv1", "conv2"], "fc1") for n in ("mnist_cnn", "lenet_classic", "small_cnn")},
}


def default_layers(model_name: str) -> tuple[list[str], str]:
    """The regional (conv) layers and the sample layer used for `model_name` when method.layers is null."""
    if model_name not in _DEFAULT_LAYERS:
        raise ConfigValueError(
            "method.layers",
            None,
            f"explicit conv layers for {model_name} (defaults exist for {sorted(_DEFAULT_LAYERS)})",
        )
    layers, sample_layer = _DEFAULT_LAYERS[model_name]
    return list(layers), sample_layer
