"""L-infinity PGD (Madry et al.) in [0, 1] pixel space: advertorch's LinfPGDAttack or a native,
batched loop with the same semantics."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from explainlab.attacks.advertorch_compat import import_advertorch_attacks
from explainlab.errors import check_choice, check_float, check_int
from explainlab.models.pixel_space import PixelSpaceModel


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
    """

    def __init__(
        self,
        eps: float = 0.3,
        steps: int = 40,
        step: float = 0.01,
        random_start: bool = True,
        targeted: bool = False,
        backend: str = "native",
        batch_size: int = 500,
        compat_clip_normalized: bool = False,
        eps_list: Sequence[float] | None = None,
    ) -> None:
        check_float("attack.eps", eps, low=0.0, high=1.0)
        check_float("attack.step", step, low=0.0, high=1.0)
        check_int("attack.steps", steps, minimum=1)
        check_int("attack.batch_size", batch_size, minimum=1)
        check_choice("attack.backend", backend, ("native", "advertorch"))
        self.eps, self.steps, self.step, self.random_start, self.targeted = eps, steps, step, random_start, targeted
        self.backend, self.batch_size, self.compat_clip_normalized = backend, batch_size, compat_clip_normalized
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
        )

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial images (B, C, H, W) in [0, 1], within eps of x (L-inf) unless in compat mode."""
        was_training = model.training
        model.eval()
        try:
            parts = [
                self._perturb_batch(model, x[i : i + self.batch_size], y[i : i + self.batch_size])
                for i in range(0, len(x), self.batch_size)
            ]
        finally:
            model.train(was_training)
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
        x = x.detach()
        delta = torch.zeros_like(x)
        if self.random_start:
            delta.uniform_(-self.eps, self.eps)
            delta = (x + delta).clamp(0.0, 1.0) - x
        for _ in range(self.steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(x + delta), y, reduction="sum")
            if self.targeted:
                loss = -loss
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = (delta + self.step * grad.sign()).clamp(-self.eps, self.eps)
                delta = (x + delta).clamp(0.0, 1.0) - x
        return (x + delta).clamp(0.0, 1.0).detach()
