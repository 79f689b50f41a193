"""L-infinity PGD (Madry et al.) in [0, 1] pixel space: advertorch's LinfPGDAttack or a native,
batched loop with the same semantics."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from explainlab.attacks.advertorch_compat import import_advertorch_attacks
from explainlab.errors import ConfigValueError, check_choice, check_float, check_int
from explainlab.models.compute import (
    autocast_context,
    channels_last_model,
    check_autocast,
    compiled,
    fold_batch_norms,
    input_gradients_only,
    model_device,
    resolve_channels_last,
)
from explainlab.models.pixel_space import PixelSpaceModel

log = logging.getLogger(__name__)


def _check_native_switch(key: str, value: object, backend: str) -> None:
    """A boolean option only the native backend implements."""
    if not isinstance(value, bool):
        raise ConfigValueError(key, value, "true or false")
    if value and backend != "native":
        raise ConfigValueError(key, value, "false with attack.backend=advertorch")


class LinfPGD:
    """Untargeted (or targeted) L-inf PGD with optional random start; cross-entropy summed over the
    batch, as in advertorch's default and the library-network paper's code.

    eps: radius in pixel units of [0, 1]; step: step size in pixel units; steps: iterations.
    backend: 'advertorch' (LinfPGDAttack through the compatibility shim) or 'native' (the same
        update written directly in torch: faster, and identical images given the same start).
    batch_size: images attacked per call of the backend.
    eps_list: radii that sweeping methods attack with (default: [eps]).
    compat_clip_normalized: reproduce the original code, which attacked the *normalised* images
        and clipped them to [0, 1] in normalised units; this moves the images far outside the
        eps-ball in pixel space and is offered only to reproduce published numbers.
    compat_bn_train: reproduce the original code, which never called `model.eval()`, so its PGD ran
        with batch normalisation (and dropout) in training mode: every forward pass normalised with
        the statistics of the attacked batch. The attack then runs on a deep copy of the model in
        training mode, so the real model's running statistics stay untouched. Batch statistics
        couple the images of a batch: only with `batch_size` >= the number of attacked images are
        they those of the original's one batch (`check_batch_statistics` warns otherwise).
    channels_last: run the native attack with channels-last convolutions: 'auto' (on CUDA only: on
        the 2-core CPU it was measured slower for PGD, docs/benchmarks.md), true or false.
    autocast: null (fp32) or 'bf16' (native backend on CUDA only: bf16 autocast of the forward and
        backward passes; the images then differ slightly from fp32 ones, see docs/benchmarks.md).
    fold_bn: attack a copy of the model whose eval-mode batch norms are folded into the convolutions
        before them (`models.compute.fold_batch_norms`; native backend, not with compat_bn_train).
        The same function up to rounding, faster (ResNet20 1.75x, ResNet44 1.06x on the loaded
        2-core CPU), but the images are no longer bitwise advertorch's: pixels whose gradient is
        near zero may take the other sign (docs/benchmarks.md). Models whose batch norms cannot be
        folded are refused.
    compile: run the native attack's forward and backward through `torch.compile` (inductor; native
        backend, not with fold_bn, whose copy is new every call). The steady state of a ResNet20 PGD
        step was 1.57x eager on the 2-core CPU, but compiling takes about 2 minutes per process and
        input shape, so it pays only for long attacks; images equal eager ones up to float32
        rounding (near-zero gradients may flip sign).

    The native backend computes gradients with respect to the input only (parameters are frozen
    for the attack), with no host synchronisation inside the loop.
    """

    def __init__(
        self,
        eps: float = 0.1,
        steps: int = 40,
        step: float = 0.01,
        random_start: bool = True,
        targeted: bool = False,
        backend: str = "native",
        batch_size: int = 500,
        compat_clip_normalized: bool = False,
        eps_list: Sequence[float] | None = None,
        compat_bn_train: bool = False,
        channels_last: bool | str = "auto",
        autocast: str | None = None,
        fold_bn: bool = False,
        compile: bool = False,
    ) -> None:
        check_float("attack.eps", eps, low=0.0, high=1.0)
        check_float("attack.step", step, low=0.0, high=1.0)
        check_int("attack.steps", steps, minimum=1)
        check_int("attack.batch_size", batch_size, minimum=1)
        check_choice("attack.backend", backend, ("native", "advertorch"))
        self.eps, self.steps, self.step, self.random_start, self.targeted = eps, steps, step, random_start, targeted
        self.backend, self.batch_size, self.compat_clip_normalized = backend, batch_size, compat_clip_normalized
        if not isinstance(compat_bn_train, bool):
            raise ConfigValueError("attack.compat_bn_train", compat_bn_train, "true or false")
        self.compat_bn_train = compat_bn_train
        check_choice("attack.channels_last", channels_last, ("auto", True, False))
        check_autocast("attack.autocast", autocast)
        if autocast is not None and backend != "native":
            raise ConfigValueError("attack.autocast", autocast, "null with attack.backend=advertorch")
        self.channels_last, self.autocast = channels_last, autocast
        _check_native_switch("attack.fold_bn", fold_bn, backend)
        if fold_bn and compat_bn_train:
            raise ConfigValueError(
                "attack.fold_bn", fold_bn, "false with attack.compat_bn_train=true (training-mode batch norms "
                "normalise with the attacked batch's statistics, which cannot be folded into weights)"
            )  # fmt: skip
        self.fold_bn = fold_bn
        _check_native_switch("attack.compile", compile, backend)
        if compile and fold_bn:
            raise ConfigValueError(
                "attack.compile", compile, "false with attack.fold_bn=true (the folded copy is made anew for every "
                "call, so it would be compiled again every time)"
            )  # fmt: skip
        self.compile = compile
        if eps_list is not None and len(eps_list) == 0:
            raise ConfigValueError("attack.eps_list", [], "a non-empty list of radii in [0, 1] (or null: [attack.eps])")
        self.eps_list = [float(e) for e in (eps_list if eps_list is not None else [eps])]
        for e in self.eps_list:
            check_float("attack.eps_list", e, low=0.0, high=1.0)

    def with_eps(self, eps: float) -> LinfPGD:
        """The same attack at another radius."""
        return LinfPGD(
            eps,
            self.steps,
            self.step,
            self.random_start,
            self.targeted,
            self.backend,
            self.batch_size,
            self.compat_clip_normalized,
            self.eps_list,
            self.compat_bn_train,
            self.channels_last,
            self.autocast,
            self.fold_bn,
            self.compile,
        )

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial images (B, C, H, W) in [0, 1], within eps of x (L-inf) unless in compat mode.

        The model is attacked in eval mode (its mode is restored afterwards), or, with
        `compat_bn_train`, a training-mode copy of it is, or, with `fold_bn`, an eval-mode copy with
        its batch norms folded into the convolutions (the model itself is not changed)."""
        check_batch_statistics(self, len(x))
        if self.autocast is not None:
            autocast_context("attack.autocast", self.autocast, x.device)  # refuses before any work
        if self.compat_bn_train:
            attacked = copy.deepcopy(model).train()
            return self._perturb_all(attacked, x, y)
        was_training = model.training
        model.eval()
        try:
            attacked = fold_batch_norms(model, key="attack.fold_bn") if self.fold_bn else model
            return self._perturb_all(attacked, x, y)
        finally:
            model.train(was_training)

    def _perturb_all(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        parts = [
            self._perturb_batch(model, x[i : i + self.batch_size], y[i : i + self.batch_size])
            for i in range(0, len(x), self.batch_size)
        ]
        return torch.cat(parts) if parts else x.clone()

    def _perturb_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self.compat_clip_normalized:
            return self._run(model, x, y)
        if not isinstance(model, PixelSpaceModel):
            raise ValueError("attack.compat_clip_normalized needs a PixelSpaceModel (normalisation inside).")
        norm = model.normalize
        adv_normalized = self._run(model.net, norm(x), y)
        return adv_normalized * norm.std + norm.mean

    def _run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.backend == "advertorch":
            attacks = import_advertorch_attacks()
            adversary = attacks.LinfPGDAttack(
                model,
                loss_fn=nn.CrossEntropyLoss(reduction="sum"),
                eps=self.eps,
                nb_iter=self.steps,
                eps_iter=self.step,
                rand_init=self.random_start,
                clip_min=0.0,
                clip_max=1.0,
                targeted=self.targeted,
            )
            return adversary.perturb(x, y).detach()
        return self._native(model, x, y)

    def _native(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The update of advertorch's `perturb_iterative` (L-inf), operation for operation, so that the
        images are bitwise the same given the same start: delta <- clamp(delta + step * sign(grad),
        -eps, eps); delta <- clamp(x + delta, 0, 1) - x; returns clamp(x + delta, 0, 1)."""
        device = model_device(model)
        channels_last = resolve_channels_last(
            self.channels_last, device, model, key="attack.channels_last", auto_on_cpu=False
        )
        memory_format = torch.channels_last if channels_last and x.dim() == 4 else torch.contiguous_format
        x = x.detach()
        delta = torch.zeros_like(x)
        if self.random_start:  # drawn in x's own layout, so the start does not depend on channels_last
            delta.uniform_(-self.eps, self.eps)
            delta = (x + delta).clamp(0.0, 1.0) - x
        x, delta = x.contiguous(memory_format=memory_format), delta.contiguous(memory_format=memory_format)
        sign = -1.0 if self.targeted else 1.0
        forward = compiled(model) if self.compile else model
        with (
            input_gradients_only(model),
            channels_last_model(model, channels_last),
            autocast_context("attack.autocast", self.autocast, x.device),
        ):
            for _ in range(self.steps):
                delta.requires_grad_(True)
                loss = F.cross_entropy(forward(x + delta), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, delta)
                with torch.no_grad():
                    # sign * step is exact, so add_ gives advertorch's delta + step * sign(grad) bit for bit
                    delta = delta.detach().add_(grad.sign_(), alpha=sign * self.step).clamp_(-self.eps, self.eps)
                    delta = torch.add(x, delta).clamp_(0.0, 1.0).sub_(x)
        return (x + delta).clamp_(0.0, 1.0).contiguous()


def check_batch_statistics(attack: LinfPGD, n_images: int) -> str | None:
    """Warn (and return the message) when a `compat_bn_train` attack will split `n_images` into
    batches of `attack.batch_size`: each batch is then normalised with its own statistics, not
    those of all attacked images at once as in the original code. None when nothing is wrong."""
    if not getattr(attack, "compat_bn_train", False) or n_images <= attack.batch_size:
        return None
    message = (
        f"attack.compat_bn_train: attack.batch_size={attack.batch_size} is smaller than the {n_images} attacked "
        f"images, so batch normalisation uses the statistics of batches of {attack.batch_size}, not of all "
        f"{n_images} at once as the original code did; set attack.batch_size>={n_images} to reproduce it"
    )
    log.warning(message)
    return message
