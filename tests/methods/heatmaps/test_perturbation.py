"""Region perturbation (AOPC): the true relevance of a planted linear model beats random and
least-relevant-first orders; grid cells for sizes that do not tile, Samek's neighbourhoods;
insertion/deletion curves against a loop of their definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explainlab.methods.heatmaps import insertion_deletion, perturbation_curve, region_order
from explainlab.methods.heatmaps.perturbation import region_mask


class Linear(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x * self.weight).flatten(1).sum(1, keepdim=True)
        return torch.cat([score, -score], dim=1)


def test_true_relevance_beats_random_and_reverse_orders() -> None:
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(1, 1, 16, 16, generator=g)
    model = Linear(weight)
    images = torch.rand(8, 1, 16, 16, generator=g, dtype=torch.float32)
    target = torch.zeros(8, dtype=torch.long)
    means = images.mean((2, 3), keepdim=True)
    relevance = (weight * (images - means))[:, 0]  # exact contribution of each pixel vs the 'mean' fill
    curves = {
        order: perturbation_curve(model, images, relevance, target, steps=8, patch=4, order=order, fill="mean")
        for order in ("morf", "random", "lerf")
    }
    assert curves["morf"][1][-1] > curves["random"][1][-1] > curves["lerf"][1][-1]
    # First step: the drop equals the most relevant patch's summed relevance (linear model, exact).
    scores = curves["morf"][0]
    best = torch.nn.functional.avg_pool2d(relevance.unsqueeze(1), 4).flatten(1).amax(1) * 16
    assert (scores[:, 0] - scores[:, 1]).tolist() == pytest.approx(best.tolist(), rel=1e-4, abs=1e-4)
    assert curves["morf"][1][0] == 0


def test_region_order_and_bad_input() -> None:
    heat = torch.zeros(1, 8, 8)
    heat[0, 4:, :4] = 1.0  # patch index 2 of a 2x2 grid of 4x4 patches
    assert region_order(heat, 4, "morf")[0, 0] == 2 and region_order(heat, 4, "lerf")[0, -1] == 2
    model = Linear(torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="do not fit"):
        perturbation_curve(model, torch.rand(1, 1, 8, 8), heat, torch.zeros(1, dtype=torch.long), patch=9)
    with pytest.raises(ValueError, match="regions"):
        perturbation_curve(model, torch.rand(1, 1, 8, 8), heat, torch.zeros(1, dtype=torch.long), regions="disc")


def test_grid_cells_cover_an_image_that_does_not_tile() -> None:
    """10 x 10 pixels in 4 x 4 cells: a centred 3 x 3 grid (padding 1 before, 1 after), partial cells
    at the border; the cells partition the image and their relevance counts only pixels inside it."""
    heat = torch.rand(2, 10, 10, generator=torch.Generator().manual_seed(0))
    order = region_order(heat, 4, "morf")
    assert order.shape == (2, 9)
    masks = torch.stack([region_mask(order[:, k], (10, 10), 4) for k in range(9)])  # (9, 2, 1, 10, 10)
    assert torch.equal(masks.sum(0), torch.ones(2, 1, 10, 10, dtype=torch.long))
    assert sorted(masks[:, 0, 0].flatten(1).sum(1).tolist()) == [9] * 4 + [12] * 4 + [16]  # 3 + 4 + 3 pixels a side
    sums = torch.stack([(heat[0] * m[0, 0]).sum() for m in masks])
    assert torch.all(sums[:-1] >= sums[1:])  # most relevant first


def test_neighbourhood_regions_follow_the_most_relevant_pixels() -> None:
    """Samek et al.'s reading: step k replaces the 9 x 9 window centred on the k-th most relevant pixel."""
    heat = torch.zeros(1, 20, 20)
    heat[0, 10, 12], heat[0, 2, 3] = 2.0, 1.0
    order = region_order(heat, 9, "morf", regions="neighbourhood")
    assert order[0, :2].tolist() == [10 * 20 + 12, 2 * 20 + 3]
    first = region_mask(order[:, 0], (20, 20), 9, "neighbourhood")[0, 0]
    expected = torch.zeros(20, 20, dtype=torch.bool)
    expected[6:15, 8:17] = True
    assert torch.equal(first, expected)
    second = region_mask(order[:, 1], (20, 20), 9, "neighbourhood")[0, 0]
    assert second.sum() == 7 * 8 and second[0, 0] and not second[7, 3]  # clipped at the border
    model = Linear(torch.ones(1, 1, 20, 20))
    images = torch.rand(1, 1, 20, 20)
    scores, aopc = perturbation_curve(model, images, heat, torch.zeros(1, dtype=torch.long), steps=2, patch=9,
                                      regions="neighbourhood", fill="black")  # fmt: skip
    assert scores[0, 1].item() == pytest.approx((images[0, 0] * ~expected).sum().item(), rel=1e-5)


def _curve_by_loop(model: nn.Module, image: torch.Tensor, heat: torch.Tensor, target: int, steps: int,
                   substrate: torch.Tensor, mode: str) -> list[float]:  # fmt: skip
    """Petsiuk et al.'s definition, pixel by pixel in Python (float64)."""
    h, w = heat.shape
    ranked = sorted(range(h * w), key=lambda p: -float(heat.flatten()[p]))
    out = []
    for k in range(steps + 1):
        chosen = set(ranked[: round(k * h * w / steps)])
        x = (image if mode == "deletion" else substrate).clone()
        for p in chosen:
            x[:, p // w, p % w] = (substrate if mode == "deletion" else image)[:, p // w, p % w]
        out.append(float(model(x[None]).softmax(1)[0, target].detach()))
    return out


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_insertion_and_deletion_equal_their_definition(mode: str) -> None:
    g = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).double()
    images = torch.rand(2, 2, 6, 6, generator=g, dtype=torch.float64)
    heat = torch.rand(2, 6, 6, generator=g, dtype=torch.float64)
    target = torch.tensor([0, 2])
    substrate = "black" if mode == "deletion" else "mean"
    scores, auc = insertion_deletion(model, images, heat, target, mode=mode, steps=5, substrate=substrate)
    for i in range(2):
        base = (
            torch.zeros_like(images[i])
            if mode == "deletion"
            else images[i].mean((1, 2), keepdim=True).expand_as(images[i])
        )
        expected = _curve_by_loop(model, images[i], heat[i], int(target[i]), 5, base, mode)
        assert scores[i].tolist() == pytest.approx(expected, abs=1e-12)
        assert auc[i].item() == pytest.approx(float(np.trapezoid(expected, dx=1 / 5)), abs=1e-12)
    blurred, _ = insertion_deletion(model, images, heat, target, mode="insertion", steps=2, blur_sigma=1.0)
    assert torch.allclose(blurred[:, -1], model(images).softmax(1).gather(1, target[:, None]).squeeze(1))
