"""LinfPGD's `compat_bn_train`: the original code's training-mode attack, on a copy of the model."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explainlab.attacks.pgd import LinfPGD, check_batch_statistics
from explainlab.errors import ConfigValueError
from explainlab.models.pixel_space import PixelSpaceModel
from tests.helpers import with_bn_statistics


def _bn_model() -> PixelSpaceModel:
    """A tiny CNN with batch normalisation whose running statistics differ from any batch's."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
    )
    bn = net[1]
    bn.running_mean.normal_(0, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    bn.num_batches_tracked.fill_(7)
    return PixelSpaceModel(net, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3)).double().eval()


def _reference_train_mode_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, step: float,
                              steps: int) -> torch.Tensor:  # fmt: skip
    """The original code's loop, written out: PGD (no random start, summed CE) calling a model that
    is in training mode (as `gen_adv.py`, which never calls eval())."""
    model = copy.deepcopy(model).train()
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).clamp(0, 1)


def _data(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def test_compat_bn_train_equals_a_reference_that_calls_the_model_in_train_mode() -> None:
    model = _bn_model()
    x, y = _data()
    kw = {"eps": 0.05, "step": 0.01, "steps": 5, "random_start": False}
    ours = LinfPGD(compat_bn_train=True, **kw).perturb(model, x, y)
    reference = _reference_train_mode_pgd(model, x, y, 0.05, 0.01, 5)
    assert torch.equal(ours, reference)
    eval_mode = LinfPGD(**kw).perturb(model, x, y)
    assert not torch.equal(ours, eval_mode)  # the running statistics would have given other images


def test_compat_bn_train_leaves_the_model_untouched() -> None:
    model = _bn_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _data()
    LinfPGD(eps=0.05, step=0.01, steps=3, compat_bn_train=True).perturb(model, x, y)
    assert not model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN buffers included
    model.train()
    LinfPGD(eps=0.05, step=0.01, steps=3, compat_bn_train=True).perturb(model, x, y)
    assert model.training


def test_compat_bn_train_uses_the_statistics_of_the_attacked_batch() -> None:
    """With batch statistics an image's adversarial depends on the other images of its batch; with
    running statistics it does not."""
    model = _bn_model()
    x, y = _data(8)
    for compat, coupled in ((True, True), (False, False)):
        attack = LinfPGD(eps=0.05, step=0.01, steps=4, random_start=False, compat_bn_train=compat)
        alone = attack.perturb(model, x[:4], y[:4])
        together = attack.perturb(model, x, y)[:4]
        assert torch.equal(alone, together) is not coupled
    # batch_size splits the images into batches, each normalised by its own statistics
    split = LinfPGD(eps=0.05, step=0.01, steps=4, random_start=False, compat_bn_train=True, batch_size=4)
    whole = LinfPGD(eps=0.05, step=0.01, steps=4, random_start=False, compat_bn_train=True, batch_size=8)
    assert torch.equal(split.perturb(model, x, y)[:4], whole.perturb(model, x[:4], y[:4]))


def test_compat_bn_train_with_the_clipping_mode_and_the_advertorch_backend() -> None:
    model = _bn_model()
    x, y = _data()
    kw = {"eps": 0.05, "step": 0.01, "steps": 3, "random_start": False, "compat_bn_train": True}
    native = LinfPGD(backend="native", compat_clip_normalized=True, **kw).perturb(model, x, y)
    theirs = LinfPGD(backend="advertorch", compat_clip_normalized=True, **kw).perturb(model, x, y)
    assert torch.allclose(native, theirs, atol=1e-10)
    # the clipping mode attacks the normalised images of the inner network in training mode
    inner = _reference_train_mode_pgd(model.net, model.normalize(x), y, 0.05, 0.01, 3)
    assert torch.allclose(native, inner * model.normalize.std + model.normalize.mean, atol=1e-12)


def test_batch_statistics_check_warns_only_when_batches_are_split(caplog: pytest.LogCaptureFixture) -> None:
    attack = LinfPGD(batch_size=100, compat_bn_train=True)
    with caplog.at_level(logging.WARNING, logger="explainlab.attacks.pgd"):
        assert check_batch_statistics(attack, 100) is None
        message = check_batch_statistics(attack, 200)
    assert message and "attack.batch_size=100" in message and "200" in message
    assert "attack.batch_size" in caplog.text
    assert check_batch_statistics(LinfPGD(batch_size=100), 200) is None  # eval mode: batches do not matter
    with pytest.raises(ConfigValueError, match="attack.compat_bn_train"):
        LinfPGD(compat_bn_train="yes")


def test_with_eps_keeps_compat_bn_train() -> None:
    attack = LinfPGD(eps=0.1, compat_bn_train=True, batch_size=7).with_eps(0.2)
    assert attack.compat_bn_train and attack.eps == 0.2 and attack.batch_size == 7


# --- the native backend's fast path: input gradients only, exact advertorch semantics -------------


def _small_cnn() -> PixelSpaceModel:
    from explainlab.models import build_model

    torch.manual_seed(0)
    return build_model("small_cnn", image_size=8, mean=(0.5,), std=(0.3,)).double().eval()


def test_native_equals_advertorch_bit_for_bit_in_float64() -> None:
    model = _small_cnn()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(12, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (12,), generator=g)
    for targeted in (False, True):
        kw = {"eps": 0.05, "steps": 6, "step": 0.01, "random_start": False, "targeted": targeted, "batch_size": 5}
        ours = LinfPGD(backend="native", **kw).perturb(model, x, y)
        theirs = LinfPGD(backend="advertorch", **kw).perturb(model, x, y)
        assert torch.equal(ours, theirs)
        assert not torch.equal(ours, x)


def test_native_freezes_parameters_only_for_the_attack() -> None:
    model = _small_cnn()
    first = next(model.parameters())
    first.requires_grad_(False)  # a flag the attack must give back as it found it
    x, y = torch.rand(4, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    LinfPGD(eps=0.05, steps=2, step=0.01).perturb(model, x, y)
    assert [p.requires_grad for p in model.parameters()] == [False] + [True] * (len(list(model.parameters())) - 1)
    assert all(p.grad is None for p in model.parameters())  # no weight gradients were computed


def test_channels_last_attack_keeps_the_model_layout_and_the_images() -> None:
    model = _small_cnn()
    x, y = torch.rand(6, 1, 8, 8, dtype=torch.float64), torch.arange(6)
    kw = {"eps": 0.05, "steps": 4, "step": 0.01, "random_start": False}
    plain = LinfPGD(channels_last=False, **kw).perturb(model, x, y)
    last = LinfPGD(channels_last=True, **kw).perturb(model, x, y)
    assert torch.allclose(plain, last, atol=1e-12) and last.is_contiguous()
    assert all(p.is_contiguous() for p in model.parameters())
    torch.manual_seed(5)
    a = LinfPGD(channels_last=True, eps=0.05, steps=2).perturb(model, x, y)
    torch.manual_seed(5)
    b = LinfPGD(channels_last=False, eps=0.05, steps=2).perturb(model, x, y)
    assert torch.allclose(a, b, atol=1e-12)  # the random start does not depend on the layout


def test_bad_channels_last_and_autocast_are_refused() -> None:
    with pytest.raises(ConfigValueError, match="attack.channels_last"):
        LinfPGD(channels_last="yes")
    with pytest.raises(ConfigValueError, match="attack.autocast"):
        LinfPGD(autocast="fp16")
    with pytest.raises(ConfigValueError, match="attack.autocast.*advertorch"):
        LinfPGD(autocast="bf16", backend="advertorch")
    attack = LinfPGD(autocast="bf16", steps=1)
    assert attack.with_eps(0.2).autocast == "bf16"
    with pytest.raises(ConfigValueError, match="attack.autocast.*CUDA-only"):
        attack.perturb(_small_cnn().float(), torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))


# --- attack.fold_bn: the attack on a copy with batch norms folded into the convolutions ------------


def _bn_resnet20() -> PixelSpaceModel:
    """A random-weight ResNet20 in float64 whose batch norms are far from the identity."""
    from explainlab.models.cifar_resnet import cifar_resnet

    torch.manual_seed(0)
    net = with_bn_statistics(cifar_resnet("resnet20"), 3, bias=False)
    return PixelSpaceModel(net, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26)).double().eval()


def _gradient_floor(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, step: float, steps: int):
    """The unfolded attack written out; returns its images and, per pixel, the smallest |gradient|
    over the steps relative to that step's largest (where a sign may flip under rounding)."""
    delta, floor = torch.zeros_like(x), torch.full_like(x, float("inf"))
    for _ in range(steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x + delta), y, reduction="sum"), delta)
        floor = torch.minimum(floor, grad.abs() / grad.abs().amax())
        delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).clamp(0, 1), floor


def test_fold_bn_attack_equals_the_unfolded_one_in_float64_where_gradients_are_not_near_zero() -> None:
    model = _bn_resnet20()
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(6, 3, 32, 32, generator=g, dtype=torch.float64), torch.randint(0, 10, (6,), generator=g)
    kw = {"eps": 8 / 255, "step": 2 / 255, "steps": 4, "random_start": False}
    unfolded = LinfPGD(**kw).perturb(model, x, y)
    folded = LinfPGD(fold_bn=True, **kw).perturb(model, x, y)
    reference, floor = _gradient_floor(model, x, y, 8 / 255, 2 / 255, 4)
    assert torch.allclose(unfolded, reference, atol=1e-12)
    differ = folded != unfolded
    assert (floor[differ] < 1e-9).all()  # a flipped sign only where some step's gradient was ~0
    assert differ.float().mean() < 1e-3 and not torch.equal(folded, x)
    with torch.no_grad():
        assert torch.equal(model(folded).argmax(1), model(unfolded).argmax(1))


def test_fold_bn_leaves_the_model_untouched_and_restores_its_mode() -> None:
    model = _bn_resnet20().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    x, y = torch.rand(4, 3, 32, 32, dtype=torch.float64), torch.arange(4)
    LinfPGD(eps=0.03, step=0.01, steps=2, fold_bn=True).perturb(model, x, y)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 19


def test_fold_bn_is_validated() -> None:
    with pytest.raises(ConfigValueError, match="attack.fold_bn"):
        LinfPGD(fold_bn="yes")
    with pytest.raises(ConfigValueError, match="attack.fold_bn.*advertorch"):
        LinfPGD(fold_bn=True, backend="advertorch")
    with pytest.raises(ConfigValueError, match="attack.fold_bn.*compat_bn_train"):
        LinfPGD(fold_bn=True, compat_bn_train=True)
    assert LinfPGD(fold_bn=True, eps=0.1).with_eps(0.2).fold_bn
    unfoldable = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    with pytest.raises(ConfigValueError, match=r"attack.fold_bn.*batch norm\(s\) 2 "):
        LinfPGD(fold_bn=True, steps=1).perturb(unfoldable.eval(), torch.rand(2, 1, 2, 2), torch.tensor([0, 1]))


def test_compile_is_validated_and_kept_by_with_eps() -> None:
    with pytest.raises(ConfigValueError, match="attack.compile"):
        LinfPGD(compile="yes")
    with pytest.raises(ConfigValueError, match="attack.compile.*advertorch"):
        LinfPGD(compile=True, backend="advertorch")
    with pytest.raises(ConfigValueError, match="attack.compile.*fold_bn"):
        LinfPGD(compile=True, fold_bn=True)
    assert LinfPGD(compile=True).with_eps(0.2).compile


@pytest.mark.parametrize(("eps_list", "match"), [([], "non-empty"), ([0.1, 1.5], "attack.eps_list")])
def test_the_attack_refuses_an_empty_or_out_of_range_eps_list_itself(eps_list: list, match: str) -> None:
    with pytest.raises(ConfigValueError, match=match):  # notebooks get the same refusal as the command line
        LinfPGD(eps_list=eps_list)


@pytest.mark.slow  # compiling takes ~20 s even for this small net on the 2-core CPU
def test_compiled_attack_equals_the_eager_one_up_to_rounding() -> None:
    model = _small_cnn().float()
    g = torch.Generator().manual_seed(6)
    x, y = torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    kw = {"eps": 0.05, "steps": 4, "step": 0.01, "random_start": False, "batch_size": 8}
    eager = LinfPGD(**kw).perturb(model, x, y)
    ours = LinfPGD(compile=True, **kw).perturb(model, x, y)
    assert (ours != eager).float().mean() < 0.02 and (ours - eager).abs().max() <= 2 * 0.01 * 4 + 1e-6
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.shared_data
def test_native_matches_advertorch_on_pretrained_resnet20(shared_data, shared_models) -> None:
    from explainlab.data.cifar10 import read_cifar10_batch
    from explainlab.models.build import pretrained_cifar_resnet

    images, labels = read_cifar10_batch(shared_data / "cifar-10-batches-py" / "test_batch")
    x, y = torch.from_numpy(images[:24]).float() / 255, torch.from_numpy(labels[:24])
    model = pretrained_cifar_resnet("resnet20", models_dir=str(shared_models)).eval()
    kw = {"eps": 8 / 255, "steps": 3, "step": 2 / 255, "random_start": False}
    ours = LinfPGD(backend="native", **kw).perturb(model, x, y)
    theirs = LinfPGD(backend="advertorch", **kw).perturb(model, x, y)
    assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.gpu
def test_bf16_autocast_on_cuda_stays_in_the_ball_and_attacks() -> None:
    model = _small_cnn().float().cuda()
    x = torch.rand(64, 1, 8, 8, device="cuda")
    y = model(x).argmax(1)
    kw = {"eps": 0.1, "steps": 10, "step": 0.02, "random_start": False}
    fp32 = LinfPGD(**kw).perturb(model, x, y)
    bf16 = LinfPGD(autocast="bf16", **kw).perturb(model, x, y)
    assert (bf16 - x).abs().max() <= 0.1 + 1e-6 and bf16.dtype == torch.float32
    with torch.no_grad():
        acc32, acc16 = ((model(a).argmax(1) == y).float().mean().item() for a in (fp32, bf16))
    assert abs(acc32 - acc16) <= 0.1


@pytest.mark.shared_data
def test_fold_bn_keeps_robust_accuracy_on_pretrained_resnet20(shared_data, shared_models) -> None:
    from explainlab.data.cifar10 import read_cifar10_batch
    from explainlab.models.build import pretrained_cifar_resnet
    from explainlab.models.compute import fold_batch_norms

    images, labels = read_cifar10_batch(shared_data / "cifar-10-batches-py" / "test_batch")
    x, y = torch.from_numpy(images[:32]).float() / 255, torch.from_numpy(labels[:32])
    model = pretrained_cifar_resnet("resnet20", models_dir=str(shared_models)).eval()
    with torch.no_grad():
        logits = model(x)  # up to ~24: 1e-5 of that scale is a few float32 ulps
        assert (fold_batch_norms(model)(x) - logits).abs().max() <= 1e-5 * logits.abs().max()
    kw = {"eps": 2 / 255, "steps": 3, "step": 1 / 255, "random_start": False}
    plain, folded = LinfPGD(**kw).perturb(model, x, y), LinfPGD(fold_bn=True, **kw).perturb(model, x, y)
    with torch.no_grad():
        robust = [(model(a).argmax(1) == y).sum().item() for a in (plain, folded)]
    assert robust[0] == robust[1] and robust[0] < (model(x).argmax(1) == y).sum().item()
    assert (plain != folded).float().mean() < 0.1  # near-zero gradients may take the other sign


@pytest.mark.gpu
def test_fold_bn_on_cuda_matches_the_unfolded_attack() -> None:
    model = _bn_resnet20().cuda()
    x = torch.rand(8, 3, 32, 32, dtype=torch.float64, device="cuda")
    y = torch.arange(8, device="cuda")
    kw = {"eps": 8 / 255, "step": 2 / 255, "steps": 3, "random_start": False}
    plain, folded = LinfPGD(**kw).perturb(model, x, y), LinfPGD(fold_bn=True, **kw).perturb(model, x, y)
    assert folded.device.type == "cuda" and (plain != folded).float().mean() < 1e-3
    assert all(p.device.type == "cuda" for p in model.parameters())
