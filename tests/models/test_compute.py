"""The fast-path helpers: memory format per device, input-only gradients, autocast refusal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from explainlab.errors import ConfigValueError
from explainlab.models.compute import (
    autocast_context,
    channels_last_model,
    fold_batch_norms,
    input_gradients_only,
    resolve_channels_last,
)
from explainlab.models.pixel_space import PixelSpaceModel
from tests.helpers import with_bn_statistics


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


# --- folding batch norms into convolutions (attack.fold_bn) -------------------------------------


def _resnet20(dtype: torch.dtype) -> PixelSpaceModel:
    from explainlab.models.cifar_resnet import cifar_resnet

    torch.manual_seed(0)
    net = with_bn_statistics(cifar_resnet("resnet20"))
    return PixelSpaceModel(net, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26)).to(dtype).eval()


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_folded_resnet20_and_small_net_give_the_same_logits(dtype: torch.dtype, tol: float) -> None:
    g = torch.Generator().manual_seed(1)
    small = with_bn_statistics(_net()).to(dtype)
    for model, size in ((_resnet20(dtype), 32), (small, 6)):
        x = torch.rand(6, 3, size, size, generator=g, dtype=dtype)
        folded = fold_batch_norms(model)
        assert isinstance(folded, PixelSpaceModel) and not folded.training
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the model is not changed
        with torch.no_grad():
            reference, ours = model(x), folded(x)
        scale = reference.abs().max().clamp(min=1.0)  # ResNet20's random-weight logits reach ~20
        assert (ours - reference).abs().max() <= tol * scale


def test_folding_a_torchvision_resnet_and_a_net_without_batch_norms() -> None:
    import torchvision

    from explainlab.models.mnist_nets import MnistCNN

    torch.manual_seed(0)
    tv = with_bn_statistics(torchvision.models.resnet18(num_classes=10)).double().eval()
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    folded = fold_batch_norms(tv)
    with torch.no_grad():
        assert torch.allclose(folded(x), tv(x), atol=1e-10, rtol=0)  # downsample branches included
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    cnn = MnistCNN()
    assert fold_batch_norms(cnn) is cnn  # nothing to fold: the model itself


def test_unfoldable_batch_norms_are_refused_by_name() -> None:
    class Branching(nn.Module):  # the convolution's output is read by the batch norm and the sum
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv(x)
            return self.bn(h) + h

    class Untraceable(nn.Module):  # data-dependent control flow
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    after_pool = nn.Sequential(nn.Conv2d(3, 3, 1), nn.MaxPool2d(2), nn.BatchNorm2d(3))
    with pytest.raises(ConfigValueError, match=r"attack.fold_bn.*batch norm\(s\) bn do not directly follow"):
        fold_batch_norms(Branching().eval())
    with pytest.raises(ConfigValueError, match=r"attack.fold_bn.*batch norm\(s\) 2 do not"):
        fold_batch_norms(after_pool.eval())
    with pytest.raises(ConfigValueError, match="attack.fold_bn.*Untraceable.*torch.fx cannot trace"):
        fold_batch_norms(Untraceable().eval())
    no_stats = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3, track_running_stats=False))
    with pytest.raises(ConfigValueError, match="running statistics"):
        fold_batch_norms(no_stats.eval())
