"""Addressing layers by dotted name, and recording their outputs with forward hooks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from explainlab.errors import ConfigValueError
from explainlab.models.pixel_space import PixelSpaceModel


def unwrap(model: nn.Module) -> nn.Module:
    """The classifier inside a `PixelSpaceModel` (layer names are relative to it)."""
    return model.net if isinstance(model, PixelSpaceModel) else model


def layer_names(model: nn.Module) -> list[str]:
    """Every addressable module of `model` by dotted name, in definition order (root excluded)."""
    return [name for name, _ in unwrap(model).named_modules() if name]


def resolve_layers(model: nn.Module, names: Iterable[str], *, key: str = "layers") -> dict[str, nn.Module]:
    """Map each name to its module; an unknown name raises an error naming `key` and the valid names."""
    modules = dict(unwrap(model).named_modules())
    resolved = {}
    for name in names:
        if not name or name not in modules:
            valid = ", ".join(layer_names(model))
            raise ConfigValueError(key, name, f"a layer of {type(unwrap(model)).__name__}; valid names: {valid}")
        resolved[name] = modules[name]
    return resolved


class ActivationRecorder:
    """Context manager that stores the raw outputs of named layers during forward passes.

    >>> with ActivationRecorder(model, ["conv1", "fc1"]) as rec:
    ...     model(x)
    >>> rec.activations["conv1"].shape   # (B, ...) exactly as the module returned it

    detach: store detached tensors (default) or keep the graph for gradients.
    A tuple output keeps its first element. Each forward overwrites the previous batch.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], *, detach: bool = True, key: str = "layers") -> None:
        self.modules = resolve_layers(model, names, key=key)
        self.detach = detach
        self.activations: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str):
        def store(_module: nn.Module, _inputs: tuple, output: object) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            self.activations[name] = out.detach() if self.detach else out

        return store

    def __enter__(self) -> ActivationRecorder:
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@torch.no_grad()
def record_activations(model: nn.Module, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """One forward pass of `x`; returns {name: output of that layer}."""
    with ActivationRecorder(model, names) as rec:
        model(x)
    return dict(rec.activations)
