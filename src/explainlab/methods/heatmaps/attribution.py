"""Attribution heat maps through Captum, and LRP through zennit (paper 003's methods, survey 004's).

`explain(model, x, target, method)` returns (N, C, H, W) attributions; `to_heatmap` reduces them to
(N, H, W) maps in [0, 1] for display and SSIM. Hook-based methods (guided backprop, deconvnet,
DeepLIFT) need every ReLU to be its own, not-in-place module: `prepare_for_attribution` rewrites a
copy of the model with torch.fx so that functional relus (F.relu, as in the CIFAR ResNets and MNIST
nets) and modules called more than once (torchvision ResNet blocks reuse `self.relu`) become
distinct nn.ReLU modules. Grad-CAM reads the layer's output on the original model (a traced graph
no longer has the block as one module); guided Grad-CAM is guided backprop x upsampled Grad-CAM.
LRP ('lrp_epsilon': the ε rule everywhere; 'lrp': zennit's EpsilonPlusFlat composite) runs on a
canonical copy, see `lrp.py`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.fx
from captum.attr import (
    Deconvolution,
    DeepLift,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Occlusion,
    Saliency,
)
from torch import nn

from explainlab.errors import check_choice
from explainlab.methods.heatmaps.lrp import canonical_copy, inner_input, lrp, separate_relus, trace
from explainlab.models.layers import resolve_layers, unwrap


def prepare_for_attribution(model: nn.Module) -> torch.fx.GraphModule:
    """A traced copy of `model` in which every ReLU application is its own nn.ReLU(inplace=False)."""
    return separate_relus(trace(model))


def gradcam_layer(model: nn.Module) -> str:
    """The last feature layer of `model` (paper 003's Table 3.2: ResNets layer4, CIFAR ResNets layer3,
    Inception V3 Mixed_7c, AlexNet/VGG/DenseNet/SqueezeNet features); otherwise the last Conv2d."""
    net = unwrap(model)
    if hasattr(net, "Mixed_7c"):
        return "Mixed_7c"
    if hasattr(net, "layer4"):
        return "layer4"
    if hasattr(net, "layer3"):
        return "layer3"
    if hasattr(net, "features"):
        return "features"
    convs = [name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(net).__name__} has no conv layer for Grad-CAM")
    return convs[-1]


def _gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: str | None) -> torch.Tensor:
    name = layer or gradcam_layer(model)
    module = resolve_layers(model, [name], key="method.gradcam_layer")[name]
    cam = LayerGradCam(model, module).attribute(x, target=target, relu_attributions=True)
    return LayerAttribution.interpolate(cam, x.shape[-2:], interpolate_mode="bilinear")


@dataclass(frozen=True)
class AttributionMethod:
    """One entry of the registry (Captum-style: one method, one `attribute` call).

    reduction: how `to_heatmap` reduces channels ('max_abs': Simonyan et al.'s max |.| for
    gradient-like maps; 'sum': the signed sum, the total relevance of a pixel, for relevance-like ones).
    separate_relus: runs on `prepare_for_attribution(model)` (hook-based methods that need every ReLU
    to be its own module). canonical: runs on the LRP canonical copy (`lrp.canonical_copy`).
    options: the keyword options `attribute` reads (the same names as in conf/method/heatmaps.yaml).
    attribute(model, x, target, inputs) -> (N, C, H, W); `inputs` holds the prepared copies and options.
    """

    name: str
    reduction: str
    attribute: Callable[[nn.Module, torch.Tensor, torch.Tensor, AttributionInputs], torch.Tensor]
    separate_relus: bool = False
    canonical: bool = False
    options: tuple[str, ...] = ()


@dataclass
class AttributionInputs:
    """What an entry's `attribute` may use besides the model and images: the prepared copies of the
    model (made once per model by `prepare`) and the options (see `explain`)."""

    prepared: nn.Module | None = None
    canonical: nn.Module | None = None
    layer: str | None = None
    baseline: float = 0.0
    ig_steps: int = 32
    occlusion_window: int = 8
    occlusion_stride: int = 4


def _integrated_gradients(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, a: AttributionInputs
) -> torch.Tensor:
    # One pass of len(x) images per step instead of len(x) * steps images at once (memory).
    return IntegratedGradients(model).attribute(
        x, baselines=a.baseline, target=target, n_steps=a.ig_steps, internal_batch_size=len(x)
    )


def _occlusion(model: nn.Module, x: torch.Tensor, target: torch.Tensor, a: AttributionInputs) -> torch.Tensor:
    window, stride = a.occlusion_window, a.occlusion_stride
    return Occlusion(model).attribute(
        x, sliding_window_shapes=(x.shape[1], window, window), strides=(x.shape[1], stride, stride),
        baselines=a.baseline, target=target,
    )  # fmt: skip


_ENTRIES = (
    AttributionMethod("gradient", "max_abs", lambda m, x, t, a: Saliency(m).attribute(x, target=t, abs=False)),
    AttributionMethod("gradient_x_input", "sum", lambda m, x, t, a: InputXGradient(m).attribute(x, target=t)),
    AttributionMethod("guided_backprop", "max_abs",
                      lambda m, x, t, a: GuidedBackprop(a.prepared).attribute(x, target=t), separate_relus=True),
    AttributionMethod("deconvnet", "max_abs", lambda m, x, t, a: Deconvolution(a.prepared).attribute(x, target=t),
                      separate_relus=True),
    AttributionMethod("gradcam", "sum", lambda m, x, t, a: _gradcam(m, x, t, a.layer).expand_as(x), options=("layer",)),
    AttributionMethod("guided_gradcam", "max_abs",
                      lambda m, x, t, a: GuidedBackprop(a.prepared).attribute(x, target=t) * _gradcam(m, x, t, a.layer),
                      separate_relus=True, options=("layer",)),
    AttributionMethod("integrated_gradients", "sum", _integrated_gradients, options=("baseline", "ig_steps")),
    AttributionMethod("deeplift", "sum",
                      lambda m, x, t, a: DeepLift(a.prepared).attribute(x, baselines=a.baseline, target=t),
                      separate_relus=True, options=("baseline",)),
    AttributionMethod("occlusion", "sum", _occlusion, options=("baseline", "occlusion_window", "occlusion_stride")),
    AttributionMethod("lrp_epsilon", "sum", lambda m, x, t, a: lrp(m, x, t, "epsilon", canonical=a.canonical),
                      canonical=True),
    AttributionMethod("lrp", "sum", lambda m, x, t, a: lrp(m, x, t, "epsilon_plus_flat", canonical=a.canonical),
                      canonical=True),
)  # fmt: skip
REGISTRY: dict[str, AttributionMethod] = {entry.name: entry for entry in _ENTRIES}
METHODS = tuple(REGISTRY)
REDUCTION = {name: entry.reduction for name, entry in REGISTRY.items()}


def prepare(model: nn.Module, x: torch.Tensor, methods: Sequence[str]) -> dict[str, nn.Module | None]:
    """The copies of `model` that `methods` need, made once: {'prepared': separate ReLUs or None,
    'canonical': the LRP canonical copy (for images like x) or None}; pass them on to `explain`."""
    entries = [REGISTRY[m] for m in methods]
    needs_relus, needs_canonical = any(e.separate_relus for e in entries), any(e.canonical for e in entries)
    return {
        "prepared": prepare_for_attribution(model) if needs_relus else None,
        "canonical": canonical_copy(model, inner_input(model, x).detach()) if needs_canonical else None,
    }


def explain(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    method: str,
    *,
    layer: str | None = None,
    prepared: nn.Module | None = None,
    canonical: nn.Module | None = None,
    baseline: float = 0.0,
    ig_steps: int = 32,
    occlusion_window: int = 8,
    occlusion_stride: int = 4,
) -> torch.Tensor:
    """Attributions (N, C, H, W) of the logits `target` (N,) for images x (N, C, H, W) in [0, 1].

    method: a key of REGISTRY (METHODS). layer: Grad-CAM layer (default `gradcam_layer(model)`).
    prepared / canonical: the copies `prepare(model, x, methods)` made, to reuse across calls (made
    here when a method needs one and none is given). baseline: the reference image value for
    integrated gradients and DeepLIFT and the occlusion fill. ig_steps: integrated-gradients steps.
    occlusion_window / occlusion_stride: occlusion patch size and stride (pixels).
    """
    check_choice("method", method, METHODS)
    entry = REGISTRY[method]
    model.eval()
    x = x.detach().clone().requires_grad_(True)
    if entry.separate_relus and prepared is None:
        prepared = prepare_for_attribution(model)
    inputs = AttributionInputs(prepared=prepared, canonical=canonical, layer=layer, baseline=baseline,
                               ig_steps=ig_steps, occlusion_window=occlusion_window,
                               occlusion_stride=occlusion_stride)  # fmt: skip
    with warnings.catch_warnings():
        # Captum announces, on every call, that it sets (and later removes) hooks on the ReLUs: expected
        # here (the separate-ReLU copy exists for it), and a line per model and method in the user's log.
        warnings.filterwarnings("ignore", message=r"Setting (forward, )?backward hooks", category=UserWarning)
        return entry.attribute(model, x, target, inputs)


def _reduce_channels(attributions: torch.Tensor, method: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W): the method's channel reduction (max |.| or the signed sum)."""
    check_choice("method", method, METHODS)
    if REGISTRY[method].reduction == "max_abs":
        return attributions.abs().amax(1)
    return attributions.sum(1)


def to_heatmap(attributions: torch.Tensor, method: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W) in [0, 1]: the method's channel reduction (its entry's), then
    min-max per map (a constant map becomes 0). A signed map's zero lands between 0 and 1."""
    maps = _reduce_channels(attributions, method)
    flat = maps.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    scaled = (flat - low) / (high - low).clamp_min(1e-12)
    return scaled.view_as(maps).detach()


def to_magnitude(attributions: torch.Tensor, method: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W) in [0, 1]: |channel reduction| over its maximum per map, so zero
    attribution stays 0 whatever the sign of the rest (what a sparsity measure must read; `to_heatmap`
    puts a signed map's zero mid-scale). An all-zero map stays 0."""
    maps = _reduce_channels(attributions, method).abs()
    return (maps / maps.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)).detach()
