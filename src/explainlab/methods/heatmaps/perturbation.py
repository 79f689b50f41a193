"""Faithfulness tests of heat maps by perturbing the image: Samek et al.'s region perturbation with its
AOPC (2017, used by paper 003, Sec. 4.3) and Petsiuk et al.'s insertion and deletion curves (2018).

Region perturbation: the image's regions are ranked by their heat-map relevance and replaced one
after the other, most relevant first (MoRF), least relevant first (LeRF) or in random order (the
baseline). Samek et al. replace "a 9 x 9 neighbourhood around" each location r_k by uniform noise;
where the regions lie is left open. Two readings (`regions`):
- 'grid' (default): non-overlapping patch x patch cells ranked by their summed relevance; an image
  whose side is no multiple of the patch gets partial cells at its borders (the grid is centred, as
  Quantus' RegionPerturbation pads it);
- 'neighbourhood': the pixel locations ranked by their heat-map value, step k replacing the
  patch x patch window centred on the k-th location (windows may overlap, as in the paper's
  x^(k) = g(x^(k−1), r_k)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import nn

from explainlab.errors import check_choice, check_float, check_int

ORDERS = ("morf", "lerf", "random")
REGIONS = ("grid", "neighbourhood")
FILLS = ("uniform", "mean", "black")


def _grid_padding(size: int, patch: int) -> tuple[int, int]:
    """(before, after) padding that makes `size` a multiple of `patch`, centred (floor before)."""
    total = -size % patch
    return total // 2, total - total // 2


def region_relevance(heatmaps: torch.Tensor, patch: int) -> torch.Tensor:
    """Summed heat map per grid cell: (N, H, W) -> (N, rows * cols), row-major; cells beyond the image
    (partial border cells) count only their pixels inside it."""
    (top, bottom), (left, right) = _grid_padding(heatmaps.shape[-2], patch), _grid_padding(heatmaps.shape[-1], patch)
    padded = F.pad(heatmaps.unsqueeze(1).double(), (left, right, top, bottom))
    return F.avg_pool2d(padded, patch, divisor_override=1).flatten(1)


def region_order(
    heatmaps: torch.Tensor, patch: int, order: str = "morf", generator: torch.Generator | None = None,
    *, regions: str = "grid",
) -> torch.Tensor:  # fmt: skip
    """Region indices per image in perturbation order: (N, H, W) -> (N, L). 'grid': cell indices
    (row-major over the centred grid), ranked by summed relevance; 'neighbourhood': pixel indices
    (row-major), ranked by value. 'random' draws a permutation per image from `generator`."""
    check_choice("order", order, ORDERS)
    check_choice("regions", regions, REGIONS)
    relevance = region_relevance(heatmaps, patch) if regions == "grid" else heatmaps.flatten(1).double()
    if order == "random":
        noise = torch.rand(relevance.shape, generator=generator).to(relevance.device)
        return noise.argsort(dim=1)
    return relevance.argsort(dim=1, descending=order == "morf", stable=True)


def region_mask(indices: torch.Tensor, shape: tuple[int, int], patch: int, regions: str = "grid") -> torch.Tensor:
    """Boolean mask (N, 1, H, W) of the region `indices` (N,) of each image (see region_order)."""
    h, w = shape
    n = len(indices)
    rows = torch.arange(n, device=indices.device)
    if regions == "neighbourhood":
        point = torch.zeros(n, 1, h * w, device=indices.device)
        point[rows, 0, indices] = 1.0
        window = F.max_pool2d(point.view(n, 1, h, w), patch, stride=1, padding=patch // 2)
        return window[..., :h, :w] > 0
    (top, bottom), (left, right) = _grid_padding(h, patch), _grid_padding(w, patch)
    grid_h, grid_w = (h + top + bottom) // patch, (w + left + right) // patch
    cells = torch.zeros(n, 1, grid_h, grid_w, dtype=torch.bool, device=indices.device)
    cells[rows, 0, indices // grid_w, indices % grid_w] = True
    full = cells.repeat_interleave(patch, 2).repeat_interleave(patch, 3)
    return full[..., top : top + h, left : left + w]


def _fill(images: torch.Tensor, fill: str, generator: torch.Generator) -> torch.Tensor:
    if fill == "uniform":
        return torch.rand(images.shape, generator=generator).to(images)
    if fill == "mean":
        return images.mean((2, 3), keepdim=True).expand_as(images)
    return torch.zeros_like(images)


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
    regions: str = "grid",
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Perturb the `steps` regions of each image in `order` one after the other and record the
    target score f(x^(k)) (the logit of `target`), k = 0 ... steps.

    images (N, C, H, W) in [0, 1]; heatmaps (N, H, W); target (N,). patch: region side in pixels
    (Samek et al.: 9). regions: 'grid' or 'neighbourhood' (module docstring). fill: 'uniform'
    (U(0, 1) noise, as Samek et al.), 'mean' (the image's channel means) or 'black' (0). All images
    perturb together: one forward pass per step. Returns (scores (N, steps + 1), AOPC curve
    (steps + 1,)): AOPC(k) = mean over images of (1 / (k + 1)) Σ_{j<=k} (f(x^(0)) − f(x^(j))), so
    AOPC(L) is Samek et al.'s AOPC of L steps.
    """
    check_int("steps", steps, minimum=0)
    check_int("patch", patch, minimum=1)
    check_choice("fill", fill, FILLS)
    check_choice("regions", regions, REGIONS)
    n, _, h, w = images.shape
    if heatmaps.shape != (n, h, w):
        raise ValueError(f"heat maps must be (N, H, W) = {(n, h, w)}, got {tuple(heatmaps.shape)}")
    if patch > min(h, w):
        raise ValueError(f"regions of {patch}x{patch} pixels do not fit images of {h}x{w}")
    generator = torch.Generator().manual_seed(seed)
    order_idx = region_order(heatmaps.cpu(), patch, order, generator, regions=regions).to(images.device)
    steps = min(steps, order_idx.shape[1])
    replacement = _fill(images, fill, generator)
    model.eval()
    x = images.clone()
    scores = [model(x).gather(1, target[:, None]).squeeze(1)]
    for k in range(steps):
        x = torch.where(region_mask(order_idx[:, k], (h, w), patch, regions), replacement, x)
        scores.append(model(x).gather(1, target[:, None]).squeeze(1))
    scores_t = torch.stack(scores, dim=1)
    drops = scores_t[:, :1] - scores_t
    aopc = (drops.cumsum(1) / torch.arange(1, steps + 2, device=drops.device)).mean(0)
    return scores_t, aopc


SUBSTRATES = ("black", "blur", "mean", "uniform")


@torch.no_grad()
def insertion_deletion(
    model: nn.Module,
    images: torch.Tensor,
    heatmaps: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str = "deletion",
    steps: int = 32,
    substrate: str | None = None,
    score: str = "probability",
    blur_sigma: float = 5.0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Petsiuk et al.'s (2018, RISE) deletion or insertion curve of each image.

    The pixels are ranked by heat-map value (highest first). Deletion: step k replaces the first
    round(k·HW/steps) pixels (all channels) by the substrate; insertion: it starts from the substrate
    and puts them back. substrate: 'black' (0; deletion's default), 'blur' (Gaussian blur with
    `blur_sigma`, kernel 2·ceil(2σ)+1; insertion's default), 'mean' (channel means), 'uniform'
    (U(0, 1) noise, seeded). score: the target's softmax 'probability' (RISE) or 'logit'.
    images (N, C, H, W) in [0, 1]; heatmaps (N, H, W); target (N,). One forward pass per step for
    all images. Returns (scores (N, steps + 1), area under each curve (N,) by the trapezoid rule
    over the fraction of pixels in [0, 1]): low is good for deletion, high for insertion.
    """
    check_choice("mode", mode, ("deletion", "insertion"))
    check_int("steps", steps, minimum=1)
    check_choice("score", score, ("probability", "logit"))
    substrate = substrate or ("black" if mode == "deletion" else "blur")
    check_choice("substrate", substrate, SUBSTRATES)
    check_float("blur_sigma", blur_sigma, low=0.0, high=1e6, closed=False)
    n, _, h, w = images.shape
    if heatmaps.shape != (n, h, w):
        raise ValueError(f"heat maps must be (N, H, W) = {(n, h, w)}, got {tuple(heatmaps.shape)}")
    if substrate == "blur":
        size = 2 * math.ceil(2 * blur_sigma) + 1
        base = TF.gaussian_blur(images, [size, size], [blur_sigma, blur_sigma])
    else:
        base = _fill(images, {"black": "black", "mean": "mean", "uniform": "uniform"}[substrate],
                     torch.Generator().manual_seed(seed))  # fmt: skip
    order = heatmaps.flatten(1).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=order.device).expand(n, -1))
    rank = rank.view(n, 1, h, w).to(images.device)
    start, end = (images, base) if mode == "deletion" else (base, images)
    model.eval()
    curve = []
    for k in range(steps + 1):
        x = torch.where(rank < round(k * h * w / steps), end, start)
        out = model(x)
        out = out.softmax(1) if score == "probability" else out
        curve.append(out.gather(1, target[:, None]).squeeze(1))
    scores = torch.stack(curve, dim=1)
    auc = (scores[:, 1:] + scores[:, :-1]).sum(1) / (2 * steps)
    return scores, auc
