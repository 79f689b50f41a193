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


def _tiny_cnn() -> torch.nn.Module:
    from explainlab.models import build_model

    torch.manual_seed(0)
    return build_model("small_cnn", image_size=8, mean=(0.5,), std=(0.3,)).double().eval()


def test_native_pgd_equals_advertorch_without_random_start() -> None:
    from explainlab.attacks.pgd import LinfPGD

    model = _tiny_cnn()
    x = torch.rand(16, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (16,))
    for targeted in (False, True):
        kw = dict(eps=0.05, steps=7, step=0.01, random_start=False, targeted=targeted, batch_size=5)
        ours = LinfPGD(backend="native", **kw).perturb(model, x, y)
        theirs = LinfPGD(backend="advertorch", **kw).perturb(model, x, y)
        assert torch.allclose(ours, theirs, atol=1e-12)
    # With the same seed the random starts coincide too.
    torch.manual_seed(3)
    a = LinfPGD(eps=0.05, steps=3, backend="native").perturb(model, x, y)
    torch.manual_seed(3)
    b = LinfPGD(eps=0.05, steps=3, backend="advertorch").perturb(model, x, y)
    assert torch.allclose(a, b, atol=1e-12)


def test_compat_clip_normalized_leaves_the_eps_ball() -> None:
    from explainlab.attacks.pgd import LinfPGD

    model = _tiny_cnn()
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.long)
    adv = LinfPGD(eps=0.01, steps=2, random_start=False, compat_clip_normalized=True).perturb(model, x, y)
    assert (adv - x).abs().max() > 0.1  # clipping in normalised units moved pixels far beyond eps
