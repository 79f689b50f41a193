"""Layer-wise relevance propagation (Bach et al. 2015) through zennit, on a canonical copy of the model.

LRP rules are attached to modules, so the model is first put into a canonical form (what zennit's
canonizers do for torchvision VGG/ResNet, here done once for any traceable model with torch.fx):
- batch norms folded into the preceding conv/linear layer (`torch.fx.experimental.optimization.fuse`);
- every ReLU its own module;
- every residual addition `a + b` of two same-shaped tensors replaced by zennit's `Sum` over
  `stack([a, b], -1)`, which the composites give the proportional `Norm` rule;
- every pooling or averaging written as a function (`F.avg_pool2d`, `F.adaptive_avg_pool2d`,
  `F.max_pool2d`, a spatial `mean`, ...) replaced by the equivalent module (`nn.AvgPool2d`,
  `nn.AdaptiveAvgPool2d`, `nn.MaxPool2d`, ...), so that averages get the `Norm` rule (relevance in
  proportion to the inputs, R_i = x_i / Σ_j x_j · R) instead of the plain gradient (R / n to every
  input), and max pools give all relevance to the maximum (winner takes all), as zennit does for them;
- Inception V3's input transform (`transform_input`) moved out of the network into `inner_input`.
Anything else the relevance flows through must be a module zennit has a rule for (conv/linear,
activations, batch norm, pools, `Sum`) or a pure rearrangement (flatten, view, cat, slicing, zero
padding, dropout in eval mode); any other operation (a product of tensors, a non-spatial mean, an
addition of differently shaped tensors, ...) is refused by name, never silently differentiated.

Relevance is propagated to the normalised input of the inner network (the first layer's input), so
a pixel-space model's normalisation does not rescale it; to_heatmap sums it over channels.

Rules: 'epsilon' (the ε rule in every conv/linear layer) and 'epsilon_plus_flat' (zennit's
EpsilonPlusFlat composite: flat rule in the first layer, z+ in the other convolutions, ε in the
dense layers; the usual choice for VGG/ResNet). Relevance starts as the target logit, so with the ε
rule and no biases the input relevances sum to f_target(x), and with ε -> 0 they equal
gradient x input (survey 004, Sec. 3.2.2; tests).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlusFlat, LayerMapComposite, layer_map_base
from zennit.core import Composite
from zennit.layer import Sum
from zennit.rules import Epsilon
from zennit.types import Activation, AvgPool, BatchNorm, MaxPool
from zennit.types import Linear as AnyLinear

from explainlab.errors import ExplainlabError, check_choice
from explainlab.models.layers import unwrap
from explainlab.models.pixel_space import PixelSpaceModel

RULES = ("epsilon", "epsilon_plus_flat")
_ADDS = (operator.add, operator.iadd, torch.add)

# Functional pools -> (module class, the function's positional parameter names after the input).
_POOLS: dict[Callable[..., Any], tuple[type[nn.Module], tuple[str, ...]]] = {
    F.avg_pool1d: (nn.AvgPool1d, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")),
    F.avg_pool2d: (nn.AvgPool2d, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                  "divisor_override")),
    F.avg_pool3d: (nn.AvgPool3d, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                  "divisor_override")),
    F.adaptive_avg_pool1d: (nn.AdaptiveAvgPool1d, ("output_size",)),
    F.adaptive_avg_pool2d: (nn.AdaptiveAvgPool2d, ("output_size",)),
    F.adaptive_avg_pool3d: (nn.AdaptiveAvgPool3d, ("output_size",)),
    F.max_pool1d: (nn.MaxPool1d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    F.max_pool2d: (nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    F.max_pool3d: (nn.MaxPool3d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    F.adaptive_max_pool1d: (nn.AdaptiveMaxPool1d, ("output_size", "return_indices")),
    F.adaptive_max_pool2d: (nn.AdaptiveMaxPool2d, ("output_size", "return_indices")),
}  # fmt: skip
_ADAPTIVE_AVG = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
# Operations that only move, select or copy values one to one: relevance passes through them as the
# gradient does (a zero-padded entry is 0 and gets no relevance under the proportional rules).
_REARRANGING_FUNCTIONS = {
    torch.flatten, torch.cat, torch.concat, torch.stack, torch.reshape, torch.squeeze, torch.unsqueeze,
    torch.transpose, torch.permute, torch.chunk, torch.split, operator.getitem, F.dropout, F.dropout2d,
}  # fmt: skip
_REARRANGING_METHODS = {
    "view", "reshape", "flatten", "squeeze", "unsqueeze", "permute", "transpose", "contiguous", "chunk",
    "split", "size", "dim",
}  # fmt: skip
# Modules a composite gives a rule (conv/linear, activations -> Pass, batch norm -> Pass, average
# pools and Sum -> Norm), max pools (winner takes all), and modules that are the identity in eval mode.
_COVERED_MODULES = (AnyLinear, Activation, BatchNorm, AvgPool, MaxPool, Sum, nn.modules.dropout._DropoutNd,
                    nn.Identity, nn.Flatten)  # fmt: skip


class LRPCoverageError(ExplainlabError, ValueError):
    """The model contains an operation no LRP rule covers (named in the message)."""


def _replace_with_module(
    traced: torch.fx.GraphModule, node: torch.fx.Node, name: str, module: nn.Module, argument: torch.fx.Node,
    *, after: torch.fx.Node | None = None,
) -> torch.fx.Node:  # fmt: skip
    """Replace `node` by a call of the new submodule `name` on `argument` (placed after `after`,
    default `node`); returns the new node."""
    traced.add_submodule(name, module)
    with traced.graph.inserting_after(after or node):
        replacement = traced.graph.call_module(name, (argument,))
    node.replace_all_uses_with(replacement)
    traced.graph.erase_node(node)
    return replacement


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


class _Shape(tuple):
    """The shape of a tensor-valued node (a torch.Size value, e.g. of `x.shape`, stays a torch.Size)."""


class _Recorder(torch.fx.Interpreter):
    """Runs the graph once and keeps, per node, the shape of a tensor result or the value of any other
    result (sizes, kernel sizes computed from shapes)."""

    def __init__(self, module: torch.fx.GraphModule) -> None:
        super().__init__(module)
        self.values: dict[torch.fx.Node, Any] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        result = super().run_node(n)
        self.values[n] = _Shape(result.shape) if isinstance(result, torch.Tensor) else result
        return result


def _is_tensor(values: dict[torch.fx.Node, Any], arg: Any) -> bool:
    return isinstance(arg, torch.fx.Node) and isinstance(values.get(arg), _Shape)


def _is_residual_add(node: torch.fx.Node, values: dict[torch.fx.Node, Any]) -> bool:
    if node.op != "call_function" or node.target not in _ADDS or node.kwargs or len(node.args) != 2:
        return False
    a, b = node.args
    return _is_tensor(values, a) and _is_tensor(values, b) and values[a] == values[b]


def _concrete(args: Any, values: dict[torch.fx.Node, Any]) -> Any:
    """Arguments with every node replaced by the value it had (e.g. a kernel size read off a shape)."""
    return torch.fx.node.map_arg(args, lambda n: values[n])


def _pool_module(node: torch.fx.Node, values: dict[torch.fx.Node, Any]) -> nn.Module:
    cls, names = _POOLS[node.target]
    kwargs = dict(zip(names, _concrete(node.args[1:], values), strict=False)) | _concrete(dict(node.kwargs), values)
    if kwargs.get("return_indices"):
        raise LRPCoverageError(f"LRP cannot follow `{node.name}` ({node.target.__name__} with return_indices)")
    return cls(**kwargs)


def _spatial_mean(node: torch.fx.Node, values: dict[torch.fx.Node, Any]) -> tuple[nn.Module, bool] | None:
    """(adaptive average pool, keepdim) when `node` is a mean over all spatial dims of an (N, C, ...)
    tensor, else None."""
    is_mean = (node.op == "call_function" and node.target is torch.mean) or (
        node.op == "call_method" and node.target == "mean"
    )
    if not is_mean or not _is_tensor(values, node.args[0]):
        return None
    ndim = len(values[node.args[0]])
    options = _concrete(dict(zip(("dim", "keepdim"), node.args[1:], strict=False)) | dict(node.kwargs), values)
    dims = options.get("dim")
    if dims is None or options.get("dtype") is not None or ndim - 2 not in _ADAPTIVE_AVG:
        return None
    dims = {d % ndim for d in ((dims,) if isinstance(dims, int) else dims)}
    if dims != set(range(2, ndim)):
        return None
    return _ADAPTIVE_AVG[ndim - 2](1), bool(options.get("keepdim", False))


def _covered(node: torch.fx.Node, traced: torch.fx.GraphModule, values: dict[torch.fx.Node, Any]) -> bool:
    if node.op in ("placeholder", "output", "get_attr") or not isinstance(values.get(node), _Shape):
        return True  # not on the path of relevance (sizes, flags, constants)
    if node.op == "call_module":
        return isinstance(traced.get_submodule(node.target), _COVERED_MODULES)
    if node.op == "call_method":
        return node.target in _REARRANGING_METHODS
    if node.target is F.pad:
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
        return mode == "constant" and not value
    return node.target in _REARRANGING_FUNCTIONS


def _describe(node: torch.fx.Node, traced: torch.fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"module {node.target!r} ({type(traced.get_submodule(node.target)).__name__})"
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"`{node.name}` ({node.op} {target})"


def canonical_copy(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """The inner network of `model` in canonical form for LRP (see the module docstring).

    example: an input batch in the inner network's input space, `inner_input(model, x)` (its first
    image is run once to find which additions add two same-shaped tensors and to read pool sizes
    computed from shapes, so the copy is specialised to inputs of this shape: `input_shape`).
    The copy computes the same function as the inner network. Raises LRPCoverageError naming the
    first operation no rule covers."""
    net = unwrap(model)
    if getattr(net, "transform_input", False):
        net = copy.deepcopy(net)
        net.transform_input = False  # applied by inner_input instead
    traced = fuse(trace(net))
    separate_relus(traced)
    recorder = _Recorder(traced)
    with torch.no_grad():
        recorder.run(example[:1])
    values = recorder.values
    for i, node in enumerate(list(traced.graph.nodes)):
        if _is_residual_add(node, values):
            with traced.graph.inserting_after(node):
                stacked = traced.graph.call_function(torch.stack, (list(node.args),), {"dim": -1})
            values[stacked] = _Shape([*values[node], 2])
            shape = values[node]
            new = _replace_with_module(traced, node, f"lrp_sum_{i}", Sum(), stacked, after=stacked)
        elif node.op == "call_function" and node.target in _POOLS:
            shape = values[node]
            new = _replace_with_module(traced, node, f"lrp_pool_{i}", _pool_module(node, values), node.args[0])
        elif (mean := _spatial_mean(node, values)) is not None:
            (pool, keepdim), source, shape = mean, node.args[0], values[node]
            new = _replace_with_module(traced, node, f"lrp_mean_{i}", pool, source)
            values[new] = _Shape([*values[source][:2], *[1] * (len(values[source]) - 2)])
            if not keepdim:  # (N, C, 1, ...) -> (N, C)
                with traced.graph.inserting_after(new):
                    flat = traced.graph.call_function(torch.flatten, (new, 1))
                new.replace_all_uses_with(flat, delete_user_cb=lambda user, flat=flat: user is not flat)
                values[flat] = shape
            continue
        else:
            continue
        values[new] = shape
    traced.graph.eliminate_dead_code()
    traced.graph.lint()
    traced.recompile()
    for node in traced.graph.nodes:
        if not _covered(node, traced, values):
            raise LRPCoverageError(
                f"LRP cannot cover {_describe(node, traced)} in {type(net).__name__}: zennit has no rule for it "
                "and relevance would pass as a plain gradient. Covered: conv/linear, activations, batch norm, "
                "average/max pooling (functional or modules), spatial means, residual additions of same-shaped "
                "tensors, and rearrangements (flatten, view, cat, slicing, zero padding, dropout)."
            )
    traced.input_shape = tuple(example.shape[1:])
    return traced.eval()


def composite(rule: str, epsilon: float = 1e-6) -> Composite:
    """zennit composite for `rule` (one of RULES)."""
    check_choice("rule", rule, RULES)
    if rule == "epsilon":
        # The same ε stabilises the sum and pooling (Norm) rules, so ε -> 0 conserves relevance exactly.
        return LayerMapComposite(layer_map=layer_map_base(epsilon) + [(AnyLinear, Epsilon(epsilon=epsilon))])
    return EpsilonPlusFlat(epsilon=epsilon)


def inner_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input the inner network's first layer sees: normalised pixels for a PixelSpaceModel, else
    x; then Inception V3's input transform when the network has one switched on."""
    z = model.normalize(x) if isinstance(model, PixelSpaceModel) else x
    net = unwrap(model)
    if getattr(net, "transform_input", False):
        z = net._transform_input(z)
    return z


def lrp(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    rule: str = "epsilon_plus_flat",
    *,
    epsilon: float = 1e-6,
    canonical: nn.Module | None = None,
) -> torch.Tensor:
    """Relevance (N, C, H, W) of the logits `target` (N,) for images x (N, C, H, W), on the inner input.

    canonical: `canonical_copy(model, inner_input(model, x))`, to reuse across calls with inputs of
    the same shape."""
    check_choice("rule", rule, RULES)
    z = inner_input(model, x).detach()
    canonical = canonical if canonical is not None else canonical_copy(model, z)
    expected = getattr(canonical, "input_shape", None)
    if expected is not None and tuple(z.shape[1:]) != expected:
        raise ValueError(f"the canonical copy was built for inputs of shape {expected}, got {tuple(z.shape[1:])}")
    with Gradient(model=canonical, composite=composite(rule, epsilon)) as attributor:
        _, relevance = attributor(z.clone(), lambda out: F.one_hot(target, out.shape[1]).to(out) * out)
    return relevance.detach()
