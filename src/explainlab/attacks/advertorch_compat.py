"""Make advertorch 0.2.3 importable on torch >= 1.9.

advertorch does `from torch.autograd.gradcheck import zero_gradients`, a helper torch removed
in 1.9. `torch.autograd.gradcheck` as an attribute is the *function* gradcheck, which shadows
the module of the same name, so the helper is put back on the module object registered in
`sys.modules` -- the object that `from ... import` reads.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from types import ModuleType

import torch

_MODULE = "torch.autograd.gradcheck"


def zero_gradients(x: torch.Tensor | Iterable[torch.Tensor]) -> None:
    """Zero (in place, detached) the .grad of a tensor or of every tensor in an iterable."""
    if isinstance(x, torch.Tensor):
        if x.grad is not None:
            x.grad.detach_()
            x.grad.zero_()
    elif isinstance(x, Iterable):
        for elem in x:
            zero_gradients(elem)


def install_shim() -> ModuleType:
    """Add `zero_gradients` to the gradcheck module in sys.modules if torch lacks it; idempotent."""
    module = sys.modules.get(_MODULE) or importlib.import_module(_MODULE)
    if not hasattr(module, "zero_gradients"):
        module.zero_gradients = zero_gradients
    return module


def import_advertorch_attacks() -> ModuleType:
    """`advertorch.attacks`, imported after installing the shim."""
    install_shim()
    return importlib.import_module("advertorch.attacks")
