"""LRP: the ε rule by hand, conservation, and zennit's own canonizers on torchvision VGG/ResNet."""

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
from explainlab.methods.heatmaps.lrp import canonical_copy, inner_input, lrp
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
