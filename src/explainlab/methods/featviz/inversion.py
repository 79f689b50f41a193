"""Model inversion (Mahendran & Vedaldi 2015; survey 004, Sec. 4): find images x whose representation
φ(x) at a layer matches φ(x0) of a given image, with a natural-image prior,

    x* = argmin_x ‖φ(x) − φ(x0)‖² / ‖φ(x0)‖² + λ_α N_α(x) + λ_V N_V^β(x),

N_α the α-norm (α = 6 keeps pixels in range) and N_V^β the total variation of order β (β = 2),
both normalised as in the paper by the number of pixels and the pixel range B (here images in [0, 1]
around 0.5: B = 0.5). "We pose this as a reconstruction problem and find a number of possible
reconstructions rather than a single one": `invert` optimises several images from different random
starts in one batch; how much they differ shows what the representation is invariant to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from explainlab.models.layers import record_activations

from .objectives import Objective
from .visualize import visualize


def representation_loss(layer: str, reference: torch.Tensor) -> Objective:
    """−‖φ(x) − φ(x0)‖² / ‖φ(x0)‖² at `layer` for each image of the batch (an objective to maximise).
    reference: φ(x0), (1, ...) or one per image."""
    ref = reference.detach()

    def score(a: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        act = a[layer]
        target = ref.to(act).expand_as(act)
        diff = (act - target).flatten(1).pow(2).sum(1)
        return -diff / target.flatten(1).pow(2).sum(1).clamp_min(1e-12)

    return Objective(score, (layer,), f"{layer}:inversion")


def alpha_norm(images: torch.Tensor, alpha: float = 6.0, *, center: float = 0.5, bound: float = 0.5) -> torch.Tensor:
    """N_α(x) = mean over pixels and channels of |x − center|^α / B^α: (B, C, H, W) -> (B,). About 1
    for pixels at the ends of [0, 1]; it grows as |x|^α outside, which keeps a reconstruction in range."""
    if alpha < 1:
        raise ValueError(f"alpha must be >= 1, got {alpha}")
    return ((images - center).abs() / bound).pow(alpha).flatten(1).mean(1)


def tv_beta(images: torch.Tensor, beta: float = 2.0, *, bound: float = 0.5) -> torch.Tensor:
    """N_V^β(x) = mean over pixels and channels of ((x_{i,j+1} − x_{ij})² + (x_{i+1,j} − x_{ij})²)^(β/2) / B^β
    (Mahendran & Vedaldi's V^β, on the (H − 1) x (W − 1) pixels with both neighbours): (B, ...) -> (B,)."""
    dx = images[..., :-1, 1:] - images[..., :-1, :-1]
    dy = images[..., 1:, :-1] - images[..., :-1, :-1]
    return ((dx.pow(2) + dy.pow(2)) / bound**2).pow(beta / 2).flatten(1).mean(1)


@dataclass
class Inversion:
    """images (starts, C, H, W) in [0, 1]; loss (starts,): the final normalised representation error
    of each reconstruction; trace: mean objective per step; seconds."""

    images: torch.Tensor
    loss: torch.Tensor
    trace: list[float]
    seconds: float


def invert(
    model: nn.Module,
    layer: str,
    image: torch.Tensor,
    *,
    starts: int = 4,
    steps: int = 512,
    lr: float = 0.05,
    alpha: float = 6.0,
    alpha_weight: float = 1e-3,
    beta: float = 2.0,
    tv_weight: float = 0.05,
    param: str = "pixel",
    transforms: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> Inversion:
    """Reconstruct `image` (1, C, H, W) in [0, 1] from `model`'s representation at `layer`, `starts`
    times from different random starts (one batch). Mahendran & Vedaldi's setting by default: pixels
    optimised directly and unsquashed, kept in range by the α-norm (`alpha_weight`; 0 switches it
    off), smoothed by N_V^β (`tv_weight`), no transformation robustness (a reconstruction must
    match the representation where the image is). Adam at `lr` for `steps` steps."""
    device = device or next(model.parameters()).device
    model = model.eval().to(device)
    image = image.to(device)
    with torch.no_grad():
        reference = record_activations(model, image, [layer])[layer]
    objective = representation_loss(layer, reference)
    penalties: list[tuple[float, Callable[[torch.Tensor], torch.Tensor]]] = []
    if alpha_weight:
        penalties.append((alpha_weight, lambda x: alpha_norm(x, alpha)))
    if tv_weight:
        penalties.append((tv_weight, lambda x: tv_beta(x, beta)))
    result = visualize(model, objective, shape=(starts, *image.shape[1:]), param=param, decorrelate=False,
                       squash="none", transforms=transforms, steps=steps, lr=lr, penalties=penalties, seed=seed,
                       device=device)  # fmt: skip
    with torch.no_grad():
        acts = record_activations(model, result.images.to(device), [layer])[layer]
        loss = -objective({layer: acts}, acts.new_zeros(len(acts), 1))
    return Inversion(result.images, loss.cpu(), result.trace, result.seconds)
