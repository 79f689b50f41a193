"""The knowledge-point drawing functions render from the methods' outputs."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch

from explainlab.methods.knowledge_points import differences_table, trace_regions
from explainlab.results import kp_figures


def test_knowledge_point_figures_render() -> None:
    g = torch.Generator().manual_seed(0)
    n, grid = 3, (4, 4)
    images = torch.rand(n, 3, 32, 32, generator=g)
    points = torch.rand(n, 16, generator=g) > 0.5
    reliable = points & (torch.rand(n, 16, generator=g) > 0.5)
    predicted = torch.randint(0, 10, (n, 16), generator=g)
    fig = kp_figures.regions_on_images(images, points, reliable, predicted, grid, torch.tensor([1, 2, 3]),
                                       class_names=[f"c{i}" for i in range(10)])  # fmt: skip
    assert len(fig.axes) == 3 and len(fig.axes[0].patches) == int(points[0].sum())
    plt.close(fig)
    h = {layer: torch.randn(n, 16, 3, generator=g) for layer in ("layer1", "layer2", "layer3")}
    where, traced = trace_regions(reliable, h)
    directions = torch.nn.functional.normalize(torch.randn(10, 3, generator=g), dim=1)
    plt.close(kp_figures.traced_regions(traced, torch.tensor([1, 2, 3])[where[:, 0]], directions))
    table = differences_table({"layer3": h["layer3"] + 0.1, "pooled": h["layer2"]}, h["layer3"], "layer3")
    fig = kp_figures.distill_histograms(table)
    assert len(fig.axes) == 2
    plt.close(fig)
    w = torch.softmax(torch.randn(n, 16, generator=g), 1)
    plt.close(kp_figures.shapley_vs_importance(w, w + 0.01 * torch.randn(n, 16, generator=g), grid,
                                               torch.tensor([0.9, float("nan"), 0.7])))  # fmt: skip
    assert isinstance(table, pd.DataFrame)
