"""How concentrated a heat map is (paper 003, Sec. 4.2.3: "SqueezeNet tends to highlight much smaller
areas"): the Gini index of its values and the area above half its maximum.

Both read non-negative maps, e.g. `attribution.to_heatmap`'s maps in [0, 1] (the maps the study
compares); signed maps are taken in absolute value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch


def gini_index(maps: torch.Tensor) -> torch.Tensor:
    """Gini index of |map| per map (Hurley & Rickard 2009; Chalasani et al.'s sparseness): 0 for a
    constant map, 1 − 1/n for a single non-zero pixel among n.

    maps (N, ...) -> (N,) float64: G = Σ_k (2k − n − 1) a_(k) / (n Σ_k a_(k)) over the values sorted
    ascending, a_(1) <= ... <= a_(n). An all-zero map gets 0."""
    flat = maps.detach().flatten(1).abs().double().sort(dim=1).values
    n = flat.shape[1]
    weights = 2 * torch.arange(1, n + 1, dtype=torch.float64, device=flat.device) - n - 1
    total = flat.sum(1)
    return torch.where(total > 0, (flat * weights).sum(1) / (n * total.clamp_min(1e-300)), torch.zeros_like(total))


def area_above_half_max(maps: torch.Tensor) -> torch.Tensor:
    """Fraction of the pixels whose |value| is at least half the map's largest |value|: (N, ...) -> (N,)
    float64 (1 for a constant non-zero map, 1/n for a single peak; 0 for an all-zero map)."""
    flat = maps.detach().flatten(1).abs().double()
    peak = flat.amax(1, keepdim=True)
    return ((flat >= peak / 2) & (peak > 0)).double().mean(1)


def sparsity_table(maps: Mapping[str, Mapping[str, torch.Tensor]], images: Sequence[int] | None = None) -> pd.DataFrame:
    """Tidy table of both measures: maps {model: {method: (N, H, W)}} -> rows (model, method, image,
    gini, area_above_half_max). images: labels of the N images (default 0 ... N − 1)."""
    rows = []
    for model, per_method in maps.items():
        for method, m in per_method.items():
            labels = list(images) if images is not None else list(range(len(m)))
            gini, area = gini_index(m).tolist(), area_above_half_max(m).tolist()
            rows += [{"model": model, "method": method, "image": label, "gini": g, "area_above_half_max": a}
                     for label, g, a in zip(labels, gini, area, strict=True)]  # fmt: skip
    return pd.DataFrame(rows, columns=["model", "method", "image", "gini", "area_above_half_max"])
