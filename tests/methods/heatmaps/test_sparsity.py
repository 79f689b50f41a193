"""Gini index and area above half the maximum: the definition in a float64 loop, planted maps."""

from __future__ import annotations

import pytest
import torch

from explainlab.methods.heatmaps import area_above_half_max, gini_index, sparsity_table


def _gini_by_loop(values: list[float]) -> float:
    """Gini as the mean absolute difference over twice the mean: Σ_i Σ_j |a_i − a_j| / (2 n² mean)."""
    n = len(values)
    mean = sum(values) / n
    return sum(abs(a - b) for a in values for b in values) / (2 * n * n * mean)


def test_gini_equals_the_mean_difference_definition() -> None:
    maps = torch.rand(3, 5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    maps[1] = maps[1] ** 4  # more concentrated
    got = gini_index(maps)
    for i in range(3):
        assert got[i].item() == pytest.approx(_gini_by_loop(maps[i].flatten().tolist()), abs=1e-12)
    assert got[1] > got[0]


def test_planted_maps() -> None:
    peak = torch.zeros(2, 8, 8)
    peak[0, 3, 3] = 1.0
    peak[1] = 0.5  # constant
    assert gini_index(peak).tolist() == pytest.approx([1 - 1 / 64, 0.0])
    assert area_above_half_max(peak).tolist() == pytest.approx([1 / 64, 1.0])
    blob = torch.zeros(1, 8, 8)
    blob[0, 2:6, 2:6] = torch.tensor([0.2, 0.6, 0.9, 1.0]).repeat(4, 1)
    assert area_above_half_max(blob).item() == pytest.approx(12 / 64)
    assert gini_index(torch.zeros(1, 4, 4)).item() == 0 and area_above_half_max(torch.zeros(1, 4, 4)).item() == 0
    assert gini_index(-peak).tolist() == gini_index(peak).tolist()  # absolute values


def test_sparsity_table_is_tidy() -> None:
    maps = {
        "a": {"gradcam": torch.rand(2, 8, 8)},
        "b": {"gradcam": torch.rand(2, 8, 8), "gradient": torch.rand(2, 8, 8)},
    }
    table = sparsity_table(maps)
    assert list(table.columns) == ["model", "method", "image", "gini", "area_above_half_max"]
    assert len(table) == 6 and set(table["image"]) == {0, 1}
