"""Knowledge-point counts under the paper's normalisation and the calibrated one, with the flags."""

from __future__ import annotations

import pytest
import torch

from explainlab.methods.knowledge_points import LinearKappa, knowledge_points, normalised_scales, point_counts


def _layers() -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
    """'low': strong regions in random directions (confident, but not about the image's class);
    'high': weaker regions pointing to their image's class direction."""
    g = torch.Generator().manual_seed(0)
    n, r, classes = 200, 16, 4
    labels = torch.arange(n) % classes
    mu = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0]] * torch.tensor([1.0, 1, 1, -1], dtype=torch.float64)[:, None]
    low = torch.nn.functional.normalize(torch.randn(n, r, 3, generator=g, dtype=torch.float64), dim=2) * 8
    high = mu[labels][:, None, :] * 2 + 0.8 * torch.randn(n, r, 3, generator=g, dtype=torch.float64)
    prior = torch.full((classes,), 1 / classes, dtype=torch.float64).log()
    return {"low": low, "high": high}, labels, prior, mu


def test_normalised_scales_give_the_reference_strength() -> None:
    h, *_ = _layers()
    paper = normalised_scales(h, "high")
    target = h["high"].norm(dim=2).mean()
    assert paper["high"] == pytest.approx(1.0)
    assert float((paper["low"] * h["low"]).norm(dim=2).mean()) == pytest.approx(float(target))
    calibrated = normalised_scales(h, "high", reference_scale=0.5)
    assert calibrated["high"] == pytest.approx(0.5) and calibrated["low"] == pytest.approx(0.5 * paper["low"])
    with pytest.raises(ValueError, match="reference layer"):
        normalised_scales(h, "nope")


def test_point_counts_flag_saturated_layers_at_chance() -> None:
    h, labels, prior, mu = _layers()
    scales = {"paper": normalised_scales(h, "high"), "calibrated": normalised_scales(h, "high", 0.3)}
    table = point_counts(h, labels, prior, mu, LinearKappa(), scales, tau=0.4).set_index(["normalisation", "layer"])
    for (name, layer), row in table.iterrows():
        direct = knowledge_points(h[layer], labels, prior, mu, LinearKappa(), tau=0.4, scale=scales[name][layer])
        assert (row.n_points, row.n_reliable) == (direct.n_points, direct.n_reliable)
        assert row.regions == 200 * 16 and row.fraction == pytest.approx(direct.n_points / 3200)
    low, high = table.loc[("paper", "low")], table.loc[("paper", "high")]
    assert low.saturated and low.fraction > 0.9
    assert low.lift == pytest.approx(1.0, abs=0.15)  # confident, but at chance about the label
    assert low.chance_ratio == pytest.approx(0.25, abs=0.03)
    assert high.lift > 2.5
    assert table.loc[("calibrated", "low")].n_points < low.n_points  # weaker features, fewer points
