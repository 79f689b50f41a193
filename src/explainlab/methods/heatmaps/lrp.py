"""Layer-wise relevance propagation (Bach et al. 2015) through zennit, on a canonical copy of the model.

LRP rules are attached to modules, so the model is first put into a canonical form (what zennit's
canonizers do for torchvision VGG/ResNet, here done once for any traceable model with torch.fx):
batch norms folded into the preceding conv/linear layer (`torch.fx.experimental.optimization.fuse`),
every ReLU its own module, and every residual addition `a + b` of two same-shaped tensors replaced
by zennit's `Sum` over `stack([a, b], -1)`, which the composites give the proportional `Norm` rule.
Relevance is propagated to the normalised input of the inner network (the first layer's input), so
a pixel-space model's normalisation does not rescale it; to_heatmap sums it over channels.

Rules: 'epsilon' (the ε rule in every conv/linear layer) and 'epsilon_plus_flat' (zennit's
EpsilonPlusFlat composite: flat rule in the first layer, z+ in the other convolutions, ε in the
dense layers; the usual choice for VGG/ResNet). Relevance starts as the target logit, so with the ε
rule and no biases the input relevances sum to f_target(x).
"""

from __future__ import annotations

import copy
import operator

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse
from torch.fx.passes.shape_prop import ShapeProp
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlusFlat, LayerMapComposite, layer_map_base
from zennit.core import Composite
from zennit.layer import Sum
from zennit.rules import Epsilon
from zennit.types import Linear as AnyLinear

from explainlab.errors import check_choice
from explainlab.models.layers import unwrap
from explainlab.models.pixel_space import PixelSpaceModel

RULES = ("epsilon", "epsilon_plus_flat")
_ADDS = (operator.add, operator.iadd, torch.add)


def _replace_with_module(
    traced: torch.fx.GraphModule, node: torch.fx.Node, name: str, module: nn.Module, argument: torch.fx.Node,
    *, after: torch.fx.Node | None = None,
) -> None:  # fmt: skip
    """Replace `node` by a call of the new submodule `name` on `argument` (placed after `after`,
    default `node`)."""
    traced.add_submodule(name, module)
    with traced.graph.inserting_after(after or node):
        replacement = traced.graph.call_module(name, (argument,))
    node.replace_all_uses_with(replacement)
    traced.graph.erase_node(node)


def separate_relus(traced: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Rewrite `traced` in place so that every ReLU application (functional, method or a module
    called more than once) is its own nn.ReLU(inplace=False) module."""
    seen: set[str] = set()
    for i, node in enumerate(list(traced.graph.nodes)):
        is_module = node.op == "call_module" and isinstance(traced.get_submodule(node.target), nn.ReLU)
        if is_module and node.target not in seen:
            seen.add(node.target)
            continue
        functional = node.op == "call_function" and node.target in (F.relu, torch.relu, torch.relu_)
        method = node.op == "call_method" and node.target in ("relu", "relu_")
        if is_module or functional or method:
            _replace_with_module(traced, node, f"attribution_relu_{i}", nn.ReLU(), node.args[0])
    for module in traced.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    traced.graph.lint()
    traced.recompile()
    return traced


def trace(model: nn.Module) -> torch.fx.GraphModule:
    """torch.fx trace of an eval-mode copy; a clear error for untraceable (data-dependent) models."""
    try:
        return torch.fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception as err:
        raise ValueError(f"{type(model).__name__} cannot be traced for attribution: {err}") from err


def _is_residual_add(node: torch.fx.Node) -> bool:
    if node.op != "call_function" or node.target not in _ADDS or node.kwargs or len(node.args) != 2:
        return False
    metas = [arg.meta.get("tensor_meta") if isinstance(arg, torch.fx.Node) else None for arg in node.args]
    return all(m is not None and hasattr(m, "shape") for m in metas) and metas[0].shape == metas[1].shape


def canonical_copy(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """The inner network of `model` in canonical form for LRP (see the module docstring).

    example: one input batch in the inner network's input space (used to find which additions add
    two same-shaped tensors). The copy computes the same function as the inner network."""
    traced = fuse(trace(unwrap(model)))
    separate_relus(traced)
    ShapeProp(traced).propagate(example)
    for i, node in enumerate(list(traced.graph.nodes)):
        if _is_residual_add(node):
            with traced.graph.inserting_after(node):
                stacked = traced.graph.call_function(torch.stack, (list(node.args),), {"dim": -1})
            _replace_with_module(traced, node, f"lrp_sum_{i}", Sum(), stacked, after=stacked)
    traced.graph.lint()
    traced.recompile()
    return traced.eval()


def composite(rule: str, epsilon: float = 1e-6) -> Composite:
    """zennit composite for `rule` (one of RULES)."""
    check_choice("rule", rule, RULES)
    if rule == "epsilon":
        # The same ε stabilises the sum and pooling (Norm) rules, so ε -> 0 conserves relevance exactly.
        return LayerMapComposite(layer_map=layer_map_base(epsilon) + [(AnyLinear, Epsilon(epsilon=epsilon))])
    return EpsilonPlusFlat(epsilon=epsilon)


def inner_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input the inner network sees: normalised pixels for a PixelSpaceModel, else x."""
    return model.normalize(x) if isinstance(model, PixelSpaceModel) else x


def lrp(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    rule: str = "epsilon_plus_flat",
    *,
    epsilon: float = 1e-6,
    canonical: nn.Module | None = None,
) -> torch.Tensor:
    """Relevance (N, C, H, W) of the logits `target` (N,) for images x (N, C, H, W).

    canonical: `canonical_copy(model, inner_input(model, x))`, to reuse across calls."""
    check_choice("rule", rule, RULES)
    z = inner_input(model, x).detach()
    canonical = canonical if canonical is not None else canonical_copy(model, z)
    with Gradient(model=canonical, composite=composite(rule, epsilon)) as attributor:
        _, relevance = attributor(z.clone(), lambda out: F.one_hot(target, out.shape[1]).to(out) * out)
    return relevance.detach()
