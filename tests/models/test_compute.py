"""The fast-path helpers: memory format per device, input-only gradients, autocast refusal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from explainlab.errors import ConfigValueError
from explainlab.models.compute import (
    autocast_context,
    channels_last_model,
    input_gradients_only,
    resolve_channels_last,
)
from explainlab.models.pixel_space import PixelSpaceModel


def _net() -> PixelSpaceModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 3, 6, 6))
    return PixelSpaceModel(net, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)).eval()


def test_resolve_channels_last_per_device_and_model() -> None:
    conv, mlp = _net(), nn.Linear(3, 2)
    assert resolve_channels_last("auto", "cuda", conv, key="k", auto_on_cpu=False)
    assert not resolve_channels_last("auto", "cpu", conv, key="k", auto_on_cpu=False)
    assert resolve_channels_last("auto", "cpu", conv, key="k", auto_on_cpu=True)
    assert not resolve_channels_last("auto", "cuda", mlp, key="k", auto_on_cpu=True)
    assert resolve_channels_last(True, "cpu", mlp, key="k", auto_on_cpu=False)
    with pytest.raises(ConfigValueError, match="trainer.channels_last"):
        resolve_channels_last("on", "cpu", conv, key="trainer.channels_last", auto_on_cpu=False)


def test_channels_last_model_gives_back_the_original_tensors() -> None:
    model = _net()
    before = {n: (t.stride(), t.data_ptr()) for n, t in model.state_dict(keep_vars=True).items()}
    with channels_last_model(model, True):
        assert model.net[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert model.normalize.mean.stride() != before["normalize.mean"][0]
    after = {n: (t.stride(), t.data_ptr()) for n, t in model.state_dict(keep_vars=True).items()}
    assert after == before  # strides of the (1, C, 1, 1) normalisation buffers included


def test_input_gradients_only_restores_flags_and_computes_no_weight_gradients() -> None:
    model = _net()
    model.net[0].bias.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    x = torch.rand(2, 3, 6, 6, requires_grad=True)
    with input_gradients_only(model):
        model(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags


def test_bf16_autocast_is_refused_off_cuda() -> None:
    with pytest.raises(ConfigValueError, match="attack.autocast.*CUDA-only"):
        autocast_context("attack.autocast", "bf16", torch.device("cpu"))
    with autocast_context("attack.autocast", None, torch.device("cpu")):
        pass
