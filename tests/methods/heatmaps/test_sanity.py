"""Sanity checks: lazily randomised models (cascading and independent), the similarity measures
against scipy / by hand, the randomisation and data-randomisation tables."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from explainlab.methods.heatmaps.attribution import explain, to_heatmap
from explainlab.methods.heatmaps.sanity import (
    compare_maps,
    data_randomisation,
    hog_similarity,
    model_randomisation,
    permuted_labels,
    randomisable_layers,
    randomised_models,
    spearman,
)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(4 * 24 * 24, 5)).eval()  # fmt: skip


def _changed(model: nn.Module, other: nn.Module) -> list[str]:
    """Names of the modules whose own parameters differ."""
    before = dict(model.named_modules())
    changed = []
    for name, m in other.named_modules():
        pairs = zip(m.parameters(recurse=False), before[name].parameters(recurse=False), strict=True)
        if any(not torch.equal(p, q) for p, q in pairs):
            changed.append(name)
    return changed


def test_cascading_and_independent_randomisation_from_the_top_one_copy() -> None:
    model = _net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert randomisable_layers(model) == ["0", "3", "6"]
    assert randomisable_layers(model, "all") == ["0", "1", "3", "6"]
    seen = []
    for step, layer, randomised in randomised_models(model, order="cascading"):
        assert _changed(model, randomised) == ["0", "3", "6"][-step:] and layer == ["6", "3", "0"][step - 1]
        seen.append(id(randomised))
    assert len(set(seen)) == 1  # one working copy, changed in place
    for step, layer, randomised in randomised_models(model, order="independent", max_layers=2):
        assert _changed(model, randomised) == [layer] == [["6", "3"][step - 1]]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # the model itself untouched
    again = [dict(r.named_parameters())["6.weight"].clone() for _, _, r in randomised_models(model, max_layers=1)]
    assert torch.equal(again[0], next(iter(randomised_models(model, max_layers=1)))[2].get_submodule("6").weight)


def test_spearman_against_scipy_with_ties_and_absolute_values() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 6, 6, generator=g), torch.randn(3, 6, 6, generator=g)
    a[0, :3] = 0.0  # ties
    got, got_abs = spearman(a, b), spearman(a, b, absolute=True)
    for i in range(3):
        assert got[i].item() == pytest.approx(spearmanr(a[i].flatten(), b[i].flatten())[0], abs=1e-12)
        assert got_abs[i].item() == pytest.approx(spearmanr(a[i].abs().flatten(), b[i].abs().flatten())[0], abs=1e-12)
    assert spearman(a, torch.ones_like(a)).tolist() == [0.0, 0.0, 0.0]  # constant map: reported as 0


def test_measures_of_identical_and_unrelated_maps() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 24, 24, generator=g)
    same = compare_maps(a, a)
    assert all(torch.allclose(v, torch.ones(2, dtype=torch.float64)) for v in same.values())
    other = compare_maps(a, torch.rand(2, 24, 24, generator=g))
    assert all((v.abs() < 0.5).all() for v in other.values())
    assert hog_similarity(a, 3 * a + 1).tolist() == pytest.approx([1.0, 1.0])  # min-max scaled first
    with pytest.raises(ValueError, match="HOG block"):
        hog_similarity(torch.rand(1, 16, 16), torch.rand(1, 16, 16))


def _gradient_maps(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    return {m: to_heatmap(explain(model, x, target, m), m) for m in ("gradient", "gradient_x_input")}


def test_model_randomisation_table() -> None:
    model = _net()
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    target = model(x).argmax(1)
    table = model_randomisation(model, x, target, _gradient_maps, order="cascading", measures=("spearman", "ssim"))
    assert list(table.columns) == ["order", "step", "layer", "method", "image", "measure", "value"]
    assert len(table) == 4 * 2 * 2 * 2  # steps 0-3 x methods x images x measures
    assert table[table["step"] == 0]["value"].to_numpy() == pytest.approx(1.0)
    last = table[(table["step"] == 3) & (table["method"] == "gradient")]
    assert (last["value"] < 0.9).all()  # every layer random: the gradient map changes
    same = data_randomisation(model, model, x, target, _gradient_maps, measures=("spearman_abs",))
    assert list(same.columns) == ["method", "image", "measure", "value"] and same["value"].to_numpy() == pytest.approx(
        1.0
    )


def test_permuted_labels_keep_the_label_counts() -> None:
    labels = torch.arange(10).repeat(5)
    shuffled = permuted_labels(labels, seed=3)
    assert torch.equal(shuffled.sort().values, labels.sort().values) and not torch.equal(shuffled, labels)
    assert torch.equal(shuffled, permuted_labels(labels, seed=3))
