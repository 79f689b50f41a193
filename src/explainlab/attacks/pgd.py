"""L-infinity PGD in [0, 1] pixel space through advertorch's LinfPGDAttack."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from explainlab.attacks.advertorch_compat import import_advertorch_attacks
from explainlab.errors import check_float, check_int


class LinfPGD:
    """Untargeted (or targeted) L-inf PGD with random start (Madry et al.), via advertorch.

    eps: radius in pixel units of [0, 1]; step: step size in pixel units; steps: iterations.
    Loss: cross-entropy summed over the batch (advertorch's default), as in the paper's code.
    """

    def __init__(
        self, eps: float = 0.3, steps: int = 40, step: float = 0.01, random_start: bool = True, targeted: bool = False
    ) -> None:
        check_float("attack.eps", eps, low=0.0, high=1.0)
        check_float("attack.step", step, low=0.0, high=1.0)
        check_int("attack.steps", steps, minimum=1)
        self.eps, self.steps, self.step, self.random_start, self.targeted = eps, steps, step, random_start, targeted

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial images (B, C, H, W) within eps of x (L-inf), clipped to [0, 1]."""
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
        return adversary.perturb(x, y)

    def sweep(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_list: Sequence[float]
    ) -> dict[float, torch.Tensor]:
        """Adversarial images per radius in `eps_list`."""
        out = {}
        for eps in eps_list:
            out[float(eps)] = LinfPGD(eps, self.steps, self.step, self.random_start, self.targeted).perturb(model, x, y)
        return out
