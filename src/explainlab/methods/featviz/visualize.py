"""Activation maximization (survey 004, Sec. 4): optimise an image parameterisation so that an
objective of the model's activations is high, with regularisers and transformation robustness."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import kornia.filters
import torch
import torchvision.transforms.v2 as T
from torch import nn

from explainlab.models.layers import ActivationRecorder

from .objectives import Objective
from .param import ImageParam


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels, per image: (B, C, H, W) -> (B,)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(1)
    return dy + dx


def bilateral_filter(images: torch.Tensor, *, sigma_space: float = 1.0, sigma_color: float = 0.1,
                     size: int | None = None) -> torch.Tensor:  # fmt: skip
    """Edge-preserving smoothing (kornia's bilateral blur; reflected borders): each pixel becomes the
    mean of its size x size neighbourhood weighted by exp(−r²/2σ_space²) · exp(−d²/2σ_color²), r the
    distance in pixels and d the L1 colour difference to the centre pixel (σ_color in the images'
    units). size defaults to 2·ceil(2σ_space) + 1. (B, C, H, W) -> (B, C, H, W)."""
    size = size or 2 * math.ceil(2 * sigma_space) + 1
    return kornia.filters.bilateral_blur(images, size, sigma_color, (sigma_space, sigma_space))


def robustness_transforms(
    pad: int = 0,
    jitter: int = 0,
    scales: Sequence[float] = (),
    degrees: float = 0.0,
    jitter2: int = 0,
    size: int | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Random transformations applied to the batch before each step (torchvision v2, on the device):
    constant padding, a random shift of up to `jitter` pixels, a random scale from `scales`, a random
    rotation within ±degrees, a second jitter, then (with `size`) a centre crop back to size x size
    for models that need their input size. One random draw per step for the whole batch."""
    steps: list[nn.Module] = []
    if pad:
        steps.append(T.Pad(pad, fill=0.5))
    if jitter:
        steps.append(_Jitter(jitter))
    if scales:
        steps.append(_ChoiceScale(scales))
    if degrees:
        steps.append(T.RandomRotation(degrees))
    if jitter2:
        steps.append(_Jitter(jitter2))
    if size:
        steps.append(T.CenterCrop(size))
    return T.Compose(steps) if steps else (lambda x: x)


class _Jitter(nn.Module):
    """Shift by a random (dy, dx) in [-d, d] with wrap-around (torch.roll)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.d = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dy, dx = torch.randint(-self.d, self.d + 1, (2,)).tolist()
        return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


class _ChoiceScale(nn.Module):
    """Resize by a factor drawn from `scales` (bilinear)."""

    def __init__(self, scales: Sequence[float]) -> None:
        super().__init__()
        self.scales = list(scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scales[int(torch.randint(len(self.scales), (1,)))]
        h, w = x.shape[-2:]
        return nn.functional.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear",
                                         align_corners=False)  # fmt: skip


@dataclass
class Visualization:
    """images (B, C, H, W) in [0, 1]; trace: mean objective per step; seconds."""

    images: torch.Tensor
    trace: list[float] = field(default_factory=list)
    seconds: float = 0.0


def visualize(
    model: nn.Module,
    objective: Objective,
    *,
    shape: tuple[int, int, int, int],
    param: str = "fourier",
    decorrelate: bool = True,
    squash: str = "sigmoid",
    transforms: Callable[[torch.Tensor], torch.Tensor] | None = None,
    steps: int = 256,
    lr: float = 0.05,
    l1: float = 0.0,
    l2: float = 0.0,
    tv: float = 0.0,
    blur_every: int = 0,
    blur_sigma: float = 0.5,
    bilateral_every: int = 0,
    bilateral: dict[str, float] | None = None,
    penalties: Sequence[tuple[float, Callable[[torch.Tensor], torch.Tensor]]] = (),
    color_matrix: torch.Tensor | None = None,
    shared: bool = False,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> Visualization:
    """Maximise `objective` over images of `shape` (B, C, H, W) with Adam at `lr` for `steps` steps.

    The loss is −objective + l1·|x − 0.5| + l2·(x − 0.5)² + tv·TV(x) + Σ weight·penalty(x) (means per
    image, summed over the batch; `penalties` are (weight, image (B, C, H, W) -> (B,)) pairs, e.g.
    `inversion.alpha_norm`); `transforms` (e.g. `robustness_transforms(...)`) are applied to the images
    before the model sees them. Frequency penalisation (survey 004, Sec. 2.2.4): with `blur_every` = k
    > 0 a pixel parameterisation is Gaussian-blurred every k steps; with `bilateral_every` = k > 0 the
    parameterisation's image (raw, before squashing) is replaced by its `bilateral_filter` every k
    steps (`bilateral`: its keyword arguments), which smooths noise but keeps edges. color_matrix:
    the decorrelation matrix (`param.color_correlation_sqrt`; default ImageNet's). shared: a
    component common to the batch (`ImageParam`). The model is used in eval mode and not changed.
    Returned images are clamped to [0, 1] (squash='none' may leave that range during the run).
    """
    torch.manual_seed(seed)
    device = device or next(model.parameters()).device
    model = model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    image = ImageParam(*shape, param=param, decorrelate=decorrelate and shape[1] == 3, squash=squash, seed=seed,
                       color_matrix=color_matrix, shared=shared).to(device)  # fmt: skip
    optimizer = torch.optim.Adam(image.parameters(), lr=lr)
    transforms = transforms or (lambda x: x)
    trace = []
    start = time.perf_counter()
    try:
        with ActivationRecorder(model, objective.layers, detach=False, key="objective") as rec:
            for step in range(steps):
                x = image()
                logits = model(transforms(x))
                score = objective(rec.activations, logits)
                loss = -score.sum()
                if l1:
                    loss = loss + l1 * (x - 0.5).abs().flatten(1).mean(1).sum()
                if l2:
                    loss = loss + l2 * (x - 0.5).pow(2).flatten(1).mean(1).sum()
                if tv:
                    loss = loss + tv * total_variation(x).sum()
                for weight, penalty in penalties:
                    loss = loss + weight * penalty(x).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                trace.append(float(score.detach().mean()))
                if blur_every and param == "pixel" and (step + 1) % blur_every == 0:
                    with torch.no_grad():
                        size = 2 * math.ceil(2 * blur_sigma) + 1
                        image.values.copy_(T.functional.gaussian_blur(image.values, [size, size], [blur_sigma] * 2))
                if bilateral_every and (step + 1) % bilateral_every == 0:
                    with torch.no_grad():
                        image.set_image(bilateral_filter(image.raw(), **(bilateral or {})))
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    with torch.no_grad():
        final = image().detach().clamp(0, 1)
    return Visualization(final, trace, time.perf_counter() - start)
