"""The fast path for forward/backward passes: memory format per device, input-only gradients,
optional bf16 autocast on GPUs.

Measured on the 2-core CPU (docs/benchmarks.md, 2026-12-06): channels-last convolutions pay for
training conv nets there but not for PGD's input-gradient passes; on CUDA they pay for both.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections import Counter
from collections.abc import Callable, Iterator

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval

from explainlab.errors import ConfigValueError, check_choice
from explainlab.models.pixel_space import PixelSpaceModel

CHANNELS_LAST_CHOICES = ("auto", True, False)


def has_conv(model: nn.Module) -> bool:
    """Whether `model` holds a 2-D convolution (channels-last only matters for those)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def model_device(model: nn.Module) -> torch.device:
    """Device of the first parameter or buffer (CPU for a model without either)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def resolve_channels_last(
    setting: object, device: torch.device | str, model: nn.Module, *, key: str, auto_on_cpu: bool
) -> bool:
    """Whether to run `model` channels-last on `device`.

    setting: true / false, or 'auto': on for conv nets on CUDA, and on the CPU only when
    `auto_on_cpu` (the caller's measured choice for its workload on this CPU).
    """
    check_choice(key, setting, CHANNELS_LAST_CHOICES)
    if setting != "auto":
        return bool(setting)
    if not has_conv(model):
        return False
    return torch.device(device).type == "cuda" or (torch.device(device).type == "cpu" and auto_on_cpu)


def set_memory_format(model: nn.Module, channels_last: bool) -> nn.Module:
    """Lay every 4-D parameter and buffer of `model` out channels-last or in the default contiguous
    format, with exactly that format's strides (a plain `model.to(memory_format=...)` leaves
    (1, C, 1, 1) buffers with the other format's strides, which then propagate to activations)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with torch.no_grad():
        for module in model.modules():
            for name, param in module._parameters.items():
                if param is not None and param.dim() == 4:
                    param.data = param.data.clone(memory_format=fmt)
            for name, buf in module._buffers.items():
                if buf is not None and buf.dim() == 4:
                    module._buffers[name] = buf.clone(memory_format=fmt)
    return model


@contextlib.contextmanager
def input_gradients_only(model: nn.Module) -> Iterator[nn.Module]:
    """Turn off requires_grad on every parameter for the block (restored after), so that a backward
    pass computes the gradient with respect to the input only: convolution and batch-norm backward
    then skip their weight gradients (about a third of a conv net's backward work)."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


@contextlib.contextmanager
def channels_last_model(model: nn.Module, enabled: bool) -> Iterator[nn.Module]:
    """Hold `model`'s 4-D parameters and buffers channels-last for the block, then put the original
    tensors back (with any values the block wrote into them), strides and all: even a (1, C, 1, 1)
    normalisation buffer whose strides changed would make later activations channels-last."""
    if not enabled:
        yield model
        return
    params = [(m, n, p, p.data) for m in model.modules() for n, p in m._parameters.items() if p is not None]
    buffers = [(m, n, b) for m in model.modules() for n, b in m._buffers.items() if b is not None]
    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        with torch.no_grad():
            for module, name, param, data in params:
                if param.data is not data:
                    data.copy_(param.data)
                    param.data = data
                module._parameters[name] = param
            for module, name, buf in buffers:
                now = module._buffers[name]
                if now is not buf:
                    buf.copy_(now)
                module._buffers[name] = buf


AUTOCAST_CHOICES = (None, "bf16")


def check_autocast(key: str, autocast: object) -> None:
    """Refuse anything but null or 'bf16'."""
    check_choice(key, autocast, AUTOCAST_CHOICES)


def autocast_context(key: str, autocast: str | None, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA for `autocast='bf16'`; refused on other devices (on this project's CPUs
    bf16 matmuls are emulated and slower than fp32)."""
    if autocast is None:
        return contextlib.nullcontext()
    if device.type != "cuda":
        raise ConfigValueError(key, autocast, f"null on {device.type} (bf16 autocast is a CUDA-only option)")
    return torch.autocast("cuda", dtype=torch.bfloat16)


FOLDABLE_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def fold_batch_norms(model: nn.Module, *, key: str = "attack.fold_bn") -> nn.Module:
    """An eval-mode copy of `model` in which every batch norm is folded into the convolution before
    it (w' = w * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta, with the
    running statistics; `torch.nn.utils.fusion.fuse_conv_bn_eval`); `model` itself is not changed.

    The same function as `model.eval()` up to rounding (float32 logits within ~1e-5), one operation
    fewer per batch norm. A model without batch norms is returned as it is. The convolution before
    each batch norm is found by tracing with torch.fx; a batch norm is foldable when its only input
    is a Conv1d/2d/3d called once, whose output nothing else reads, and it tracks running
    statistics. Anything else is refused, naming the batch norms (or the untraceable model) under
    `key`. A `PixelSpaceModel` keeps its wrapper (the inner network is folded).
    """
    if not any(isinstance(m, _BatchNorm) for m in model.modules()):
        return model
    if isinstance(model, PixelSpaceModel):
        folded = PixelSpaceModel(nn.Identity(), mean=(0.0,), std=(1.0,), name=model.arch)
        folded.normalize = copy.deepcopy(model.normalize)
        folded.net = fold_batch_norms(model.net, key=key)
        return folded.eval()
    net = copy.deepcopy(model).eval()
    try:
        traced = fx.symbolic_trace(net)
    except Exception as error:  # torch.fx raises many kinds (TraceError, TypeError, ...)
        raise ConfigValueError(
            key, True, f"false for {type(model).__name__}: torch.fx cannot trace it to find the "
            f"convolution before each batch norm ({type(error).__name__}: {error})"
        ) from error  # fmt: skip
    modules = dict(traced.named_modules())
    graph = traced.graph
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    refused = []
    for node in list(graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], _BatchNorm):
            continue
        bn, source = modules[node.target], node.args[0] if node.args else None
        conv = modules.get(source.target) if isinstance(source, fx.Node) and source.op == "call_module" else None
        if not (
            isinstance(conv, FOLDABLE_CONVS)
            and len(node.args) == 1
            and not node.kwargs
            and len(source.users) == 1
            and calls[source.target] == 1
            and calls[node.target] == 1
            and bn.track_running_stats
        ):
            refused.append(node.target)
            continue
        parent, _, name = source.target.rpartition(".")
        setattr(traced.get_submodule(parent) if parent else traced, name, fuse_conv_bn_eval(conv, bn))
        node.replace_all_uses_with(source)
        graph.erase_node(node)
    if refused:
        raise ConfigValueError(
            key, True, f"false for {type(model).__name__}: batch norm(s) {', '.join(refused)} do not directly follow "
            "a convolution whose output only they read (or do not track running statistics), so they cannot be folded"
        )  # fmt: skip
    graph.lint()
    traced.recompile()
    traced.delete_all_unused_submodules()
    return traced.eval()


_COMPILED: weakref.WeakKeyDictionary[nn.Module, Callable[..., torch.Tensor]] = weakref.WeakKeyDictionary()


def compiled(model: nn.Module) -> Callable[..., torch.Tensor]:
    """`torch.compile(model)` (inductor, default mode), made once per model object and kept while the
    model lives, so that later calls (other eps, other batches) reuse its compiled code. It shares
    `model`'s parameters and buffers. The first call compiles (about 2 minutes for ResNet20 on the
    2-core CPU, docs/benchmarks.md); a new input shape or layout may compile again."""
    if model not in _COMPILED:
        _COMPILED[model] = torch.compile(model)
    return _COMPILED[model]
