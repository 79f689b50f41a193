"""Attribution methods against hand computations on a tiny network, and on every architecture."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explainlab.methods.heatmaps.attribution import (
    METHODS,
    explain,
    gradcam_layer,
    prepare_for_attribution,
    to_heatmap,
    to_magnitude,
)
from explainlab.methods.heatmaps.sparsity import gini_index
from explainlab.methods.heatmaps.lrp import canonical_copy, inner_input
from explainlab.models.build import build_model


class Tiny(nn.Module):
    """x (N, 1, 4, 4) -> conv 3x3 (2 channels, padding 1) -> relu -> linear -> 3 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1).double()
        self.fc = nn.Linear(32, 3).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).flatten(1))


@pytest.fixture
def tiny() -> tuple[Tiny, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return Tiny(), torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.tensor([0, 2])


def _backward_through_conv(model: Tiny, grad_h: torch.Tensor) -> torch.Tensor:
    """d/dx of Σ grad_h · conv(x): the transposed convolution of grad_h."""
    return F.conv_transpose2d(grad_h, model.conv.weight, padding=1)


def test_gradient_and_gradient_times_input(tiny) -> None:
    model, x, target = tiny
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xg).gather(1, target[:, None]).sum(), xg)
    assert torch.allclose(explain(model, x, target, "gradient"), grad)
    assert torch.allclose(explain(model, x, target, "gradient_x_input"), grad * x)


def test_guided_backprop_and_deconvnet_by_hand(tiny) -> None:
    model, x, target = tiny
    h = model.conv(x)
    grad_a = model.fc.weight[target].view(2, 2, 4, 4)  # d logit / d relu output
    guided = _backward_through_conv(model, grad_a.clamp_min(0) * (h > 0))  # negative gradients zeroed
    deconv = _backward_through_conv(model, grad_a.clamp_min(0))  # the forward mask is not used
    assert torch.allclose(explain(model, x, target, "guided_backprop"), guided.detach())
    assert torch.allclose(explain(model, x, target, "deconvnet"), deconv.detach())


def test_captums_hook_notices_are_not_passed_on_to_the_user(tiny) -> None:
    model, x, target = tiny
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for method in ("guided_backprop", "deconvnet"):
            explain(model, x, target, method)
    assert not [w for w in caught if "hooks" in str(w.message)], [str(w.message) for w in caught]


def test_magnitude_keeps_zero_attribution_at_zero_where_the_heatmap_does_not() -> None:
    attributions = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    attributions[0, :, 0, 0], attributions[0, :, 3, 3] = 1.0, -0.5  # one positive, one negative pixel
    magnitude = to_magnitude(attributions, "gradient_x_input")  # signed sum over channels
    expected = torch.zeros(1, 4, 4, dtype=torch.float64)
    expected[0, 0, 0], expected[0, 3, 3] = 1.0, 0.5
    assert torch.equal(magnitude, expected)
    heatmap = to_heatmap(attributions, "gradient_x_input")  # min-max: the 14 zero pixels land at 1/3
    assert torch.allclose(heatmap[0, 1, 1], torch.tensor(1 / 3, dtype=torch.float64))
    assert gini_index(magnitude) > 0.85 > 0.5 > gini_index(heatmap)
    assert torch.equal(to_magnitude(attributions, "gradient"), to_heatmap(attributions, "gradient"))  # max |.|


def test_gradcam_weights_are_spatially_averaged_gradients(tiny) -> None:
    model, x, target = tiny
    h = model.conv(x)
    grad_h = model.fc.weight[target].view(2, 2, 4, 4) * (h > 0)
    alpha = grad_h.mean((2, 3), keepdim=True)
    cam = (alpha * h).sum(1, keepdim=True).clamp_min(0)
    got = explain(model, x, target, "gradcam", layer="conv")
    assert torch.allclose(got[:, :1], cam.detach())


def test_integrated_gradients_and_deeplift_are_complete(tiny) -> None:
    model, x, target = tiny
    delta = (model(x) - model(torch.zeros_like(x))).gather(1, target[:, None]).squeeze(1)
    ig = explain(model, x, target, "integrated_gradients", ig_steps=200).sum((1, 2, 3))
    assert ig.tolist() == pytest.approx(delta.tolist(), rel=1e-3, abs=1e-3)
    dl = explain(model, x, target, "deeplift").sum((1, 2, 3))
    assert dl.tolist() == pytest.approx(delta.tolist(), rel=1e-6, abs=1e-6)


def test_occlusion_of_a_linear_model_is_weight_times_input() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).double()
    x, target = torch.rand(3, 1, 4, 4, dtype=torch.float64), torch.tensor([0, 1, 1])
    got = explain(model, x, target, "occlusion", occlusion_window=1, occlusion_stride=1)
    # Captum accumulates occlusion differences in float32.
    assert torch.allclose(got.double(), model[1].weight[target].view(3, 1, 4, 4) * x, atol=1e-6)


def test_prepare_gives_every_relu_its_own_module() -> None:
    torch.manual_seed(0)
    net = build_model("resnet20", in_channels=3, image_size=32, mean=(0, 0, 0), std=(1, 1, 1)).eval()
    prepared = prepare_for_attribution(net)
    calls = [n.target for n in prepared.graph.nodes if n.op == "call_module"
             and isinstance(prepared.get_submodule(n.target), nn.ReLU)]  # fmt: skip
    assert len(calls) == len(set(calls)) == 19  # stem + 2 per block, none functional any more
    assert not any(n.op == "call_function" and n.target is F.relu for n in prepared.graph.nodes)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(prepared(x), net(x), atol=1e-6)
    target = net(x).argmax(1)
    assert not torch.allclose(explain(net, x, target, "guided_backprop", prepared=prepared),
                              explain(net, x, target, "gradient"))  # fmt: skip


ARCHITECTURES = {
    "small_cnn": dict(in_channels=1, image_size=8),
    "mnist_cnn": dict(in_channels=1, image_size=28),
    "resnet20": dict(in_channels=3, image_size=32, mean=(0, 0, 0), std=(1, 1, 1)),
    "resnet18": dict(in_channels=3, image_size=64, mean=(0, 0, 0), std=(1, 1, 1), num_classes=10),
    "vgg11": dict(in_channels=3, image_size=64, mean=(0, 0, 0), std=(1, 1, 1), num_classes=10),
    "alexnet": dict(in_channels=3, image_size=64, mean=(0, 0, 0), std=(1, 1, 1), num_classes=10),
    # paper 003's other architectures (untrained, small inputs; Inception V3 needs a side >= 75)
    "resnet50": dict(in_channels=3, image_size=64, mean=(0, 0, 0), std=(1, 1, 1), num_classes=10),
    "densenet121": dict(in_channels=3, image_size=64, mean=(0, 0, 0), std=(1, 1, 1), num_classes=10),
    "inception_v3": dict(in_channels=3, image_size=80, mean=(0, 0, 0), std=(1, 1, 1), num_classes=10),
    "squeezenet1_0": dict(in_channels=3, image_size=64, mean=(0, 0, 0), std=(1, 1, 1), num_classes=10),
    "squeezenet1_1": dict(in_channels=3, image_size=64, mean=(0, 0, 0), std=(1, 1, 1), num_classes=10),
}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_method_runs_on_every_architecture(name: str) -> None:
    torch.manual_seed(0)
    kwargs = ARCHITECTURES[name]
    model = build_model(name, **kwargs).eval()
    size = kwargs["image_size"]
    x = torch.rand(2, kwargs["in_channels"], size, size)
    target = model(x).argmax(1)
    prepared = prepare_for_attribution(model)
    canonical = canonical_copy(model, inner_input(model, x))
    for method in METHODS:
        attr = explain(model, x, target, method, prepared=prepared, canonical=canonical, ig_steps=8,
                       occlusion_window=size // 4, occlusion_stride=size // 4)  # fmt: skip
        assert attr.shape == x.shape and torch.isfinite(attr).all(), method
        maps = to_heatmap(attr, method)
        assert maps.shape == (2, size, size) and maps.min() >= 0 and maps.max() <= 1, method


@pytest.mark.parametrize(
    ("name", "layer"),
    [("alexnet", "features"), ("vgg16", "features"), ("resnet50", "layer4"), ("densenet121", "features"),
     ("squeezenet1_1", "features"), ("inception_v3", "Mixed_7c"), ("resnet20", "layer3")],
)  # fmt: skip
def test_gradcam_layers_follow_the_papers_table(name: str, layer: str) -> None:
    """Paper 003, Table 3.2."""
    model = build_model(name, in_channels=3, image_size=32, mean=(0, 0, 0), std=(1, 1, 1), num_classes=10)
    assert gradcam_layer(model) == layer


def test_registry_entries_know_their_needs() -> None:
    from explainlab.methods.heatmaps.attribution import REGISTRY, prepare

    assert tuple(REGISTRY) == METHODS and {e.reduction for e in REGISTRY.values()} == {"max_abs", "sum"}
    assert {n for n, e in REGISTRY.items() if e.separate_relus} == {"guided_backprop", "deconvnet", "deeplift",
                                                                   "guided_gradcam"}  # fmt: skip
    assert {n for n, e in REGISTRY.items() if e.canonical} == {"lrp_epsilon", "lrp"}
    assert REGISTRY["integrated_gradients"].options == ("baseline", "ig_steps")
    model = build_model("small_cnn", image_size=8).eval()
    x = torch.rand(2, 1, 8, 8)
    assert prepare(model, x, ["gradient", "occlusion"]) == {"prepared": None, "canonical": None}
    copies = prepare(model, x, ["deeplift", "lrp"])
    assert copies["prepared"] is not None and copies["canonical"] is not None
