"""Table 2 / Fig. 5: per-sample correlations over regions; Shapley values of regions (Captum) against
exact values; region geometry."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from torch import nn

from explainlab.methods.knowledge_points import (
    RegionShapley,
    correlation_table,
    per_sample_pearson,
    region_boxes,
    region_index_map,
    region_masks,
    strength_importance_correlation,
    trace_regions,
)


def test_per_sample_pearson_matches_scipy_row_by_row() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 16, generator=g), torch.randn(7, 16, generator=g)
    b[3] = 2 * a[3] + 1  # a perfect positive correlation
    got = per_sample_pearson(a, b)
    for i in range(7):
        assert float(got[i]) == pytest.approx(pearsonr(a[i].double(), b[i].double())[0], abs=1e-12)
    assert float(got[3]) == pytest.approx(1.0)
    const = per_sample_pearson(torch.ones(2, 5), torch.randn(2, 5, generator=g))
    assert torch.isnan(const).all()  # undefined, not 0
    with pytest.raises(ValueError, match="one shape"):
        per_sample_pearson(a, b[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        per_sample_pearson(torch.full((2, 3), float("nan")), torch.ones(2, 3))


def test_strength_importance_table_is_mean_and_std_over_samples() -> None:
    g = torch.Generator().manual_seed(1)
    h = torch.randn(30, 9, 3, generator=g, dtype=torch.float64)
    w = torch.softmax(h.norm(dim=2) + 0.3 * torch.randn(30, 9, generator=g, dtype=torch.float64), dim=1)
    per_sample = strength_importance_correlation(h, w)
    direct = [pearsonr(h[i].norm(dim=1).numpy(), w[i].numpy())[0] for i in range(30)]
    assert np.allclose(per_sample.numpy(), direct, atol=1e-12)
    w_flat = w.clone()
    w_flat[0] = 1 / 9  # one sample with uniform importance: undefined, left out of n
    table = correlation_table({"layer3": strength_importance_correlation(h, w_flat), "layer2": per_sample})
    assert list(table.columns) == ["layer", "mean", "std", "n"]
    row = table.set_index("layer").loc["layer3"]
    assert row["n"] == 29 and row["mean"] == pytest.approx(np.mean(direct[1:]))
    assert row["std"] == pytest.approx(np.std(direct[1:], ddof=1))
    assert table.set_index("layer").loc["layer2", "mean"] > 0.5


class _Net(nn.Module):
    """conv (the studied layer) -> a tail: linear in the map (pool + linear) or not (ReLU, products)."""

    def __init__(self, linear_tail: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.head = nn.Linear(3, 4)
        self.linear_tail = linear_tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv(x)
        if not self.linear_tail:
            f = torch.relu(f) * f.mean((2, 3), keepdim=True).tanh()
        return self.head(f.mean((2, 3)))


def _exact_shapley(value, players: int) -> list[float]:
    """φ_i = Σ_S |S|!(n−|S|−1)!/n! (v(S ∪ i) − v(S)), by enumeration (float64)."""
    phi = []
    for i in range(players):
        others = [p for p in range(players) if p != i]
        total = 0.0
        for size in range(players):
            for coalition in itertools.combinations(others, size):
                weight = math.factorial(size) * math.factorial(players - size - 1) / math.factorial(players)
                total += weight * (value(set(coalition) | {i}) - value(set(coalition)))
        phi.append(total)
    return phi


def test_region_shapley_is_exact_for_a_linear_tail() -> None:
    model = _Net(linear_tail=True).double().eval()
    x = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    target = torch.tensor([0, 2, 3])
    phi = RegionShapley(model, "conv", max_side=2, n_samples=3).attribute(x, target)
    f = model.conv(x).detach()
    index = region_index_map((4, 4), (2, 2))
    w = model.head.weight[target].detach()  # (N, K)
    for r in range(4):
        inside = (index == r).double()
        expected = (w * (f * inside).sum((2, 3))).sum(1) / 16  # the region's share of the pooled logit
        # Captum accumulates attributions in float32
        assert torch.allclose(phi[:, r].double(), expected, rtol=1e-5, atol=1e-6)


def test_region_shapley_shows_progress_only_when_asked(capfd: pytest.CaptureFixture[str]) -> None:
    model = _Net(linear_tail=True).double().eval()
    x = torch.rand(2, 2, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    quiet = RegionShapley(model, "conv", max_side=2, n_samples=2).attribute(x, 0)
    assert "Shapley" not in capfd.readouterr().err
    shown = RegionShapley(model, "conv", max_side=2, n_samples=2, progress=True).attribute(x, 0)
    assert "Shapley" in capfd.readouterr().err  # Captum's bar, named after the method
    assert torch.equal(quiet, shown)


def test_region_shapley_matches_enumeration_for_a_nonlinear_tail() -> None:
    model = _Net(linear_tail=False).double().eval()
    x = torch.rand(2, 2, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    f = model.conv(x).detach()
    index = region_index_map((4, 4), (2, 2))
    exact = RegionShapley(model, "conv", max_side=2, n_samples=None).attribute(x, 1)
    sampled = RegionShapley(model, "conv", max_side=2, n_samples=200, seed=1).attribute(x, 1)
    for n in range(2):

        def value(coalition: set[int], n: int = n) -> float:
            keep = torch.zeros(4, 4, dtype=torch.float64)
            for r in coalition:
                keep += (index == r).double()
            tail = f[n : n + 1] * keep
            g = torch.relu(tail) * tail.mean((2, 3), keepdim=True).tanh()
            return float(model.head(g.mean((2, 3)))[0, 1].detach())

        reference = torch.tensor(_exact_shapley(value, 4), dtype=torch.float64)
        assert torch.allclose(exact[n].double(), reference, rtol=1e-5, atol=1e-6)  # Captum sums in float32
        assert torch.allclose(sampled[n].double(), reference, atol=0.05 * float(reference.abs().max()))
        # efficiency: the values add up to v(all) − v(none)
        assert float(sampled[n].sum()) == pytest.approx(value({0, 1, 2, 3}) - value(set()), abs=1e-5)


def test_region_geometry() -> None:
    index = region_index_map((8, 8), (2, 4))
    assert index[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and index[7].tolist() == [4, 4, 5, 5, 6, 6, 7, 7]
    boxes = region_boxes((2, 4), (32, 32))
    assert boxes[5].tolist() == [8.0, 16.0, 16.0, 32.0]
    selected = torch.zeros(1, 8, dtype=torch.bool)
    selected[0, 5] = True
    mask = region_masks(selected, (2, 4), (32, 32))
    assert mask.sum() == 16 * 8 and mask[0, 16:, 8:16].all()
    h = {"a": torch.arange(2 * 8 * 3.0).reshape(2, 8, 3), "b": -torch.arange(2 * 8 * 3.0).reshape(2, 8, 3)}
    chosen = torch.zeros(2, 8, dtype=torch.bool)
    chosen[1, 2] = chosen[0, 7] = True
    where, traced = trace_regions(chosen, h)
    assert where.tolist() == [[0, 7], [1, 2]] and torch.equal(traced["b"][1], -h["a"][1, 2])
    with pytest.raises(ValueError, match="does not fit"):
        region_index_map((4, 4), (8, 8))
