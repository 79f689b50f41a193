"""Architectures, checkpoint loading and layer addressing."""

from explainlab.models.build import MODEL_NAMES, build_model, pretrained_cifar_resnet
from explainlab.models.layers import ActivationRecorder, layer_names, record_activations, resolve_layers
from explainlab.models.loading import fingerprint, load_state_dict, load_weights
from explainlab.models.pixel_space import Normalize, PixelSpaceModel

__all__ = [
    "MODEL_NAMES",
    "build_model",
    "pretrained_cifar_resnet",
    "ActivationRecorder",
    "layer_names",
    "record_activations",
    "resolve_layers",
    "fingerprint",
    "load_state_dict",
    "load_weights",
    "Normalize",
    "PixelSpaceModel",
]
