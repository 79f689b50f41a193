"""AOPC: the true relevance of a planted linear model beats random and least-relevant-first orders."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from explainlab.methods.heatmaps import perturbation_curve, region_order


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
    with pytest.raises(ValueError, match="tile"):
        perturbation_curve(model, torch.rand(1, 1, 8, 8), heat, torch.zeros(1, dtype=torch.long), patch=3)
