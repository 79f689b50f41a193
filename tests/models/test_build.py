"""Architectures: the published layer shapes, pixel-space normalisation, name validation."""

from __future__ import annotations

import pytest
import torch

from explainlab.errors import ConfigValueError
from explainlab.models import MODEL_NAMES, PixelSpaceModel, build_model


def test_mnist_cnn_is_the_pytorch_example() -> None:
    net = build_model("mnist_cnn").net
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items() if k.endswith("weight")}
    assert shapes == {
        "conv1.weight": (32, 1, 3, 3),
        "conv2.weight": (64, 32, 3, 3),
        "fc1.weight": (128, 9216),
        "fc2.weight": (10, 128),
    }
    assert [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)] == [0.25, 0.5]


def test_lenet_classic_shapes() -> None:
    net = build_model("lenet_classic").net
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items() if k.endswith("weight")}
    assert shapes == {
        "conv1.weight": (20, 1, 5, 5),
        "conv2.weight": (50, 20, 5, 5),
        "fc1.weight": (500, 800),
        "fc2.weight": (10, 500),
    }


@pytest.mark.parametrize("name,blocks", [("resnet20", 3), ("resnet44", 7), ("resnet110", 18)])
def test_cifar_resnet_depth(name: str, blocks: int) -> None:
    net = build_model(name, in_channels=3, image_size=32, mean=(0, 0, 0), std=(1, 1, 1)).net
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(net.layer1) == len(net.layer3) == blocks and len(convs) + 1 == int(name[6:])
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_normalisation_is_inside_the_model() -> None:
    model = build_model("small_cnn", image_size=8, mean=(0.5,), std=(0.25,))
    x = torch.rand(3, 1, 8, 8)
    assert isinstance(model, PixelSpaceModel)
    assert torch.allclose(model(x), model.net((x - 0.5) / 0.25))


def test_unknown_model_name_lists_choices() -> None:
    with pytest.raises(ConfigValueError, match="model.name='resnet9'.*resnet44"):
        build_model("resnet9")
    assert "vgg16_bn" in MODEL_NAMES and "alexnet" in MODEL_NAMES


def test_unknown_tap_lists_valid_layers() -> None:
    with pytest.raises(ConfigValueError, match=r"model.taps='conv3'.*conv1, conv2, dropout1"):
        build_model("mnist_cnn", taps=["conv1", "conv3"])


def test_mean_std_must_match_channels() -> None:
    with pytest.raises(ValueError, match="one per channel"):
        build_model("resnet20", in_channels=3, image_size=32, mean=(0.5,), std=(0.5,))


def test_channels_last_gives_same_outputs() -> None:
    torch.manual_seed(0)
    a = build_model("resnet20", in_channels=3, image_size=32, mean=(0, 0, 0), std=(1, 1, 1)).eval()
    b = build_model("resnet20", in_channels=3, image_size=32, mean=(0, 0, 0), std=(1, 1, 1), channels_last=True).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(a(x), b(x.contiguous(memory_format=torch.channels_last)), atol=1e-5)
