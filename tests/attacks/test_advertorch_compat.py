"""advertorch imports on current torch through the shim, and its PGD behaves."""

from __future__ import annotations

import importlib
import subprocess
import sys

import torch

from explainlab.attacks.advertorch_compat import install_shim


def test_advertorch_imports_in_a_fresh_interpreter() -> None:
    code = (
        "from explainlab.attacks.advertorch_compat import import_advertorch_attacks as f; "
        "import torch; a = f(); print(a.LinfPGDAttack.__name__, callable(torch.autograd.gradcheck))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["LinfPGDAttack", "True"]


def test_without_the_shim_the_import_fails_on_this_torch() -> None:
    code = "import advertorch.attacks"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0 and "zero_gradients" in proc.stderr


def test_shim_patches_the_module_not_the_function() -> None:
    module = install_shim()
    assert module is sys.modules["torch.autograd.gradcheck"] and hasattr(module, "zero_gradients")
    assert not hasattr(torch.autograd.gradcheck, "zero_gradients")  # the function gradcheck is untouched
    assert importlib.import_module("torch.autograd.gradcheck").zero_gradients is module.zero_gradients
    x = torch.ones(3, requires_grad=True)
    x.sum().backward()
    module.zero_gradients([x])
    assert torch.equal(x.grad, torch.zeros(3))


def test_pgd_stays_in_the_ball_and_raises_the_loss() -> None:
    from explainlab.attacks.pgd import LinfPGD

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.rand(8, 1, 4, 4)
    y = model(x).argmax(1)
    adv = LinfPGD(eps=0.1, steps=10, step=0.02).perturb(model, x, y)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    loss = torch.nn.functional.cross_entropy
    assert loss(model(adv), y) > loss(model(x), y)
