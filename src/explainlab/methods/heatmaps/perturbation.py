"""Region perturbation test of heat maps (Samek et al. 2017, used by paper 003): AOPC curves."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from explainlab.errors import check_choice, check_int


def region_order(
    heatmaps: torch.Tensor, patch: int, order: str = "morf", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Patch indices per image: 'morf' most relevant first (sum of the heat map over each non-overlapping
    patch x patch region), 'lerf' least relevant first, 'random'. heatmaps (N, H, W) -> (N, regions)."""
    check_choice("order", order, ("morf", "lerf", "random"))
    relevance = F.avg_pool2d(heatmaps.unsqueeze(1).float(), patch).flatten(1)
    if order == "random":
        noise = torch.rand(relevance.shape, generator=generator).to(relevance.device)
        return noise.argsort(dim=1)
    return relevance.argsort(dim=1, descending=order == "morf")


@torch.no_grad()
def perturbation_curve(
    model: nn.Module,
    images: torch.Tensor,
    heatmaps: torch.Tensor,
    target: torch.Tensor,
    *,
    steps: int = 20,
    patch: int = 4,
    order: str = "morf",
    fill: str = "uniform",
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Perturb the `steps` regions of each image in `order` one after the other and record the
    target score f(x^(k)) (the logit of `target`), k = 0 ... steps.

    images (N, C, H, W) in [0, 1]; heatmaps (N, H, W); target (N,). fill: 'uniform' (U(0, 1) noise, as
    Samek et al.) or 'mean' (the image's channel means). All images perturb together: one forward
    pass per step. Returns (scores (N, steps + 1), AOPC curve (steps + 1,)):
    AOPC(k) = mean over images of (1 / (k + 1)) Σ_{j<=k} (f(x^(0)) − f(x^(j))).
    """
    check_int("steps", steps, minimum=0)
    check_choice("fill", fill, ("uniform", "mean"))
    n, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"images of {h}x{w} do not tile into {patch}x{patch} patches")
    generator = torch.Generator().manual_seed(seed)
    order_idx = region_order(heatmaps, patch, order, generator)
    steps = min(steps, order_idx.shape[1])
    grid_w = w // patch
    if fill == "uniform":
        replacement = torch.rand(images.shape, generator=generator).to(images)
    else:
        replacement = images.mean((2, 3), keepdim=True).expand_as(images)
    model.eval()
    x = images.clone()
    rows = torch.arange(n, device=images.device)
    scores = [model(x).gather(1, target[:, None]).squeeze(1)]
    for k in range(steps):
        region = order_idx[:, k].to(images.device)
        mask = torch.zeros(n, 1, h // patch, w // patch, dtype=torch.bool, device=images.device)
        mask[rows, 0, region // grid_w, region % grid_w] = True
        mask = mask.repeat_interleave(patch, 2).repeat_interleave(patch, 3)
        x = torch.where(mask, replacement, x)
        scores.append(model(x).gather(1, target[:, None]).squeeze(1))
    scores_t = torch.stack(scores, dim=1)
    drops = scores_t[:, :1] - scores_t
    aopc = (drops.cumsum(1) / torch.arange(1, steps + 2, device=drops.device)).mean(0)
    return scores_t, aopc
