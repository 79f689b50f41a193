"""Layer addressing and the activation recorder."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from explainlab.models import ActivationRecorder, build_model, layer_names, record_activations


def test_layer_names_are_relative_to_the_network() -> None:
    names = layer_names(build_model("resnet20", in_channels=3, image_size=32, mean=(0, 0, 0), std=(1, 1, 1)))
    assert names[:3] == ["conv1", "bn1", "layer1"] and "layer3.2.conv2" in names and "linear" in names


def test_recorder_returns_raw_module_outputs_float64() -> None:
    model = build_model("mnist_cnn", mean=(0.1307,), std=(0.3081,)).double().eval()
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    acts = record_activations(model, x, ["conv1", "fc1", "fc2"])
    net = model.net
    conv1 = F.conv2d((x - model.normalize.mean) / model.normalize.std, net.conv1.weight, net.conv1.bias)
    assert torch.allclose(acts["conv1"], conv1)  # raw conv output, before ReLU
    assert acts["fc1"].shape == (4, 128)
    assert torch.equal(acts["fc2"], model(x))


def test_recorder_removes_its_hooks_and_keeps_graph_when_asked() -> None:
    model = build_model("small_cnn", image_size=8)
    with ActivationRecorder(model, ["conv2"], detach=False) as rec:
        model(torch.rand(2, 1, 8, 8))
    assert rec.activations["conv2"].requires_grad
    assert not model.net.conv2._forward_hooks
