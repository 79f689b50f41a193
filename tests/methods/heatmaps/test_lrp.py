"""LRP: the ε rule by hand, conservation, gradient x input for bias-free networks (pools included),
zennit's own canonizers on torchvision VGG/ResNet, and operations no rule covers refused by name."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from zennit.composites import EpsilonPlusFlat
from zennit.layer import Sum
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

from explainlab.methods.heatmaps.attribution import explain
from explainlab.methods.heatmaps.lrp import LRPCoverageError, canonical_copy, inner_input, lrp
from explainlab.models.build import build_model
from explainlab.models.layers import unwrap
from tests.methods.heatmaps.test_attribution import Tiny


def _stabilise(z: torch.Tensor, eps: float) -> torch.Tensor:
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z)


def test_epsilon_rule_by_hand() -> None:
    torch.manual_seed(0)
    model, x, target = Tiny(), torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.tensor([0, 2])
    eps = 1e-6
    z1 = model.conv(x)
    a1 = F.relu(z1)
    z2 = model.fc(a1.flatten(1))
    r2 = F.one_hot(target, 3).double() * z2  # relevance starts as the target logit
    r1 = a1.flatten(1) * ((r2 / _stabilise(z2, eps)) @ model.fc.weight)  # R_j = a_j Σ_k w_kj R_k / z_k
    r0 = x * F.conv_transpose2d(r1.view_as(z1) / _stabilise(z1, eps), model.conv.weight, padding=1)
    got = explain(model, x, target, "lrp_epsilon")
    assert torch.allclose(got, r0.detach(), rtol=1e-9, atol=1e-12)


class BiasFreeResidual(nn.Module):
    """conv -> relu -> (conv -> relu) + identity -> relu -> average pool -> linear, all without biases."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        h = F.relu(F.relu(self.conv(h)) + h)
        return self.fc(self.pool(h).flatten(1))


def test_epsilon_rule_conserves_relevance_through_a_residual_sum() -> None:
    torch.manual_seed(0)
    model = BiasFreeResidual().double().eval()
    x = torch.rand(3, 3, 6, 6, dtype=torch.float64)
    target = model(x).argmax(1)
    canonical = canonical_copy(model, x)
    assert sum(isinstance(m, Sum) for m in canonical.modules()) == 1
    relevance = lrp(model, x, target, "epsilon", epsilon=1e-12, canonical=canonical)
    logit = model(x).gather(1, target[:, None]).squeeze(1)
    assert torch.allclose(relevance.sum((1, 2, 3)), logit.detach(), rtol=1e-8)


def _randomise_batch_norms(model: nn.Module) -> None:
    """Non-trivial statistics; eps = 0 because zennit's merge leaves each batch norm dividing by
    sqrt(1 + eps) (a 5e-6 scale per layer) where torch.fx's fuse folds it exactly."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 0.0
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)


@pytest.mark.parametrize(
    ("name", "canonizer"), [("resnet18", ResNetCanonizer), ("resnet50", ResNetCanonizer), ("vgg11_bn", VGGCanonizer)]
)
def test_canonical_copy_matches_zennits_own_canonizers(name: str, canonizer: type) -> None:
    """Our fx canonicalisation (BN folded, Sum for residuals) gives zennit's EpsilonPlusFlat relevance
    exactly as zennit's hand-written torchvision canonizers do."""
    torch.manual_seed(0)
    model = build_model(name, in_channels=3, image_size=32, num_classes=10, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    _randomise_batch_norms(model)
    model = model.double().eval()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    target = model(x).argmax(1)
    ours = lrp(model, x, target, "epsilon_plus_flat")
    reference_net = copy.deepcopy(unwrap(model))
    z = inner_input(model, x).detach().requires_grad_(True)
    with EpsilonPlusFlat(canonizers=[canonizer()]).context(reference_net) as hooked:
        out = hooked(z)
        (reference,) = torch.autograd.grad(out, z, F.one_hot(target, 10).double() * out)
    assert torch.allclose(ours, reference, rtol=1e-7, atol=1e-10)
    assert torch.allclose(canonical_copy(model, z.detach())(z), model(x), atol=1e-10)


def test_torchvision_relevance_goes_to_the_inner_input() -> None:
    """The normalisation of a pixel-space model does not rescale relevance: identical networks with
    different normalisation constants and correspondingly shifted inputs get the same relevance."""
    torch.manual_seed(0)
    a = build_model("mnist_cnn", mean=(0.0,), std=(1.0,)).double().eval()
    b = build_model("mnist_cnn", mean=(0.5,), std=(0.25,)).double().eval()
    b.net.load_state_dict(a.net.state_dict())
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    target = torch.tensor([1, 2])
    xb = x * 0.25 + 0.5  # b.normalize(xb) == x
    assert torch.allclose(lrp(a, x, target, "epsilon"), lrp(b, xb, target, "epsilon"))


class FunctionalPools(nn.Module):
    """conv -> relu -> F.avg_pool2d -> conv -> relu -> F.max_pool2d -> conv -> spatial mean -> linear
    (for 8 x 8 inputs: the average pool's kernel, 2, is computed from the input's shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.conv3 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(F.relu(self.conv1(x)), x.shape[-1] // 4)  # a size read off a shape (akamaster's style)
        h = F.max_pool2d(F.relu(self.conv2(h)), kernel_size=2, stride=2)
        return self.fc(F.relu(self.conv3(h)).mean((2, 3)))


def _without_biases(model: nn.Module) -> nn.Module:
    """Zero every bias and every batch norm's shift (running mean and beta), with non-trivial scales:
    the network is then positively homogeneous, f(x) = Σ_i x_i ∂f/∂x_i."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            module.bias.data.zero_()
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.zero_()
            module.bias.data.zero_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("name", ["functional_pools", "resnet20", "densenet121"])
def test_epsilon_lrp_without_biases_equals_gradient_times_input(name: str) -> None:
    """Survey 004, Sec. 3.2.2: for a bias-free ReLU network, LRP-ε with ε -> 0 is gradient x input.
    The average pools (functional in all three: F.avg_pool2d, a spatial mean, F.adaptive_avg_pool2d
    in the CIFAR ResNet and DenseNet's head) must give relevance in proportion to their inputs; passed
    as a plain gradient they spread it uniformly and the maps differ by orders of magnitude."""
    torch.manual_seed(0)
    if name == "functional_pools":
        model, x = FunctionalPools(), torch.rand(2, 3, 8, 8, dtype=torch.float64)
    else:
        # DenseNet at 64 pixels: at 32 its last feature map is 1 x 1 and the final pool is the identity.
        size, n = (64, 1) if name == "densenet121" else (32, 2)
        model = build_model(name, in_channels=3, image_size=size, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
        x = torch.rand(n, 3, size, size, dtype=torch.float64)
    model = _without_biases(model).double().eval()
    target = model(x).argmax(1)
    relevance = lrp(model, x, target, "epsilon", epsilon=1e-12)
    z = inner_input(model, x).detach().requires_grad_(True)
    logits = unwrap(model)(z) if name != "functional_pools" else model(z)
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), z)
    expected = (grad * z).detach()
    scale = expected.abs().amax()
    assert (relevance - expected).abs().amax() < 1e-8 * scale
    assert torch.allclose(relevance.sum((1, 2, 3)), logits.gather(1, target[:, None]).squeeze(1).detach(), rtol=1e-8)


def test_functional_pools_become_modules_and_uncovered_operations_are_refused() -> None:
    model = FunctionalPools().eval()
    x = torch.rand(2, 3, 8, 8)
    canonical = canonical_copy(model, x)
    kinds = [type(m) for m in canonical.modules()]
    assert nn.AvgPool2d in kinds and nn.MaxPool2d in kinds and nn.AdaptiveAvgPool2d in kinds
    assert not any(n.op in ("call_function", "call_method") and "pool" in str(n.target) for n in canonical.graph.nodes)
    assert torch.allclose(canonical(x), model(x), atol=1e-6)
    with pytest.raises(ValueError, match="built for inputs of shape"):
        lrp(model, torch.rand(2, 3, 16, 16), torch.zeros(2, dtype=torch.long), canonical=canonical)

    class Gated(FunctionalPools):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv1(x)
            return super().forward(x) * torch.sigmoid(h).mean()  # a product of two tensors

    class ChannelMean(FunctionalPools):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(F.relu(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))).mean((1, 2)))

    for bad, name in ((Gated(), "sigmoid"), (ChannelMean(), "mean")):
        with pytest.raises(LRPCoverageError, match=name):
            canonical_copy(bad.eval(), x)
