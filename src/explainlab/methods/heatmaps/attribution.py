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
from explainlab.methods.heatmaps.lrp import lrp, separate_relus, trace
from explainlab.models.layers import resolve_layers, unwrap

METHODS = (
    "gradient",
    "gradient_x_input",
    "guided_backprop",
    "deconvnet",
    "gradcam",
    "guided_gradcam",
    "integrated_gradients",
    "deeplift",
    "occlusion",
    "lrp_epsilon",
    "lrp",
)
# Channel reduction to a 2-D map: Simonyan et al.'s max |.| for gradient-like maps, the signed sum
# (total relevance of a pixel) for the relevance-like ones.
REDUCTION = {
    "gradient": "max_abs",
    "guided_backprop": "max_abs",
    "deconvnet": "max_abs",
    "guided_gradcam": "max_abs",
    "gradient_x_input": "sum",
    "integrated_gradients": "sum",
    "deeplift": "sum",
    "occlusion": "sum",
    "gradcam": "sum",
    "lrp_epsilon": "sum",
    "lrp": "sum",
}


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
    steps: int = 32,
    window: int = 8,
    stride: int = 4,
) -> torch.Tensor:
    """Attributions (N, C, H, W) of the logits `target` (N,) for images x (N, C, H, W) in [0, 1].

    method: one of METHODS. layer: Grad-CAM layer (default `gradcam_layer(model)`). prepared: the
    result of `prepare_for_attribution(model)`, to reuse across calls. canonical: the LRP methods'
    `lrp.canonical_copy(model, lrp.inner_input(model, x))`, likewise. baseline: the reference image
    value for integrated gradients and DeepLIFT and the occlusion fill. steps: integrated-gradients
    steps. window/stride: occlusion patch size and stride (pixels).
    """
    check_choice("method", method, METHODS)
    model.eval()
    x = x.detach().clone().requires_grad_(True)
    if method in ("guided_backprop", "deconvnet", "deeplift", "guided_gradcam"):
        prepared = prepared if prepared is not None else prepare_for_attribution(model)
    if method in ("lrp_epsilon", "lrp"):
        return lrp(model, x, target, "epsilon" if method == "lrp_epsilon" else "epsilon_plus_flat", canonical=canonical)
    if method == "gradient":
        return Saliency(model).attribute(x, target=target, abs=False)
    if method == "gradient_x_input":
        return InputXGradient(model).attribute(x, target=target)
    if method == "guided_backprop":
        return GuidedBackprop(prepared).attribute(x, target=target)
    if method == "deconvnet":
        return Deconvolution(prepared).attribute(x, target=target)
    if method == "gradcam":
        return _gradcam(model, x, target, layer).expand_as(x)
    if method == "guided_gradcam":
        return GuidedBackprop(prepared).attribute(x, target=target) * _gradcam(model, x, target, layer)
    if method == "integrated_gradients":
        # One pass of len(x) images per step instead of len(x) * steps images at once (memory).
        return IntegratedGradients(model).attribute(
            x, baselines=baseline, target=target, n_steps=steps, internal_batch_size=len(x)
        )
    if method == "deeplift":
        return DeepLift(prepared).attribute(x, baselines=baseline, target=target)
    return Occlusion(model).attribute(
        x, sliding_window_shapes=(x.shape[1], window, window), strides=(x.shape[1], stride, stride),
        baselines=baseline, target=target,
    )  # fmt: skip


def to_heatmap(attributions: torch.Tensor, method: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W) in [0, 1]: the method's channel reduction (REDUCTION), then
    min-max per map (a constant map becomes 0)."""
    check_choice("method", method, METHODS)
    if REDUCTION[method] == "max_abs":
        maps = attributions.abs().amax(1)
    else:
        maps = attributions.sum(1)
    flat = maps.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    scaled = (flat - low) / (high - low).clamp_min(1e-12)
    return scaled.view_as(maps).detach()
