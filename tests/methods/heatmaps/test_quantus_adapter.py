"""The project's measures against Quantus 0.6.0 (Gini, Spearman, region perturbation, model-parameter
randomisation), and Quantus metrics run on the project's methods through the adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explainlab.methods.heatmaps import gini_index, perturbation_curve
from explainlab.methods.heatmaps.attribution import explain, to_heatmap
from explainlab.methods.heatmaps.quantus_adapter import evaluate, explain_func
from explainlab.methods.heatmaps.sanity import model_randomisation, spearman

quantus = pytest.importorskip("quantus")


def test_gini_and_spearman_equal_quantus() -> None:
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(4, 7, 5, generator=g, dtype=torch.float64) ** 3
    expected = [quantus.functions.complexity_func.gini_coeffiient(m.numpy(), m.numpy()[None]) for m in maps]
    assert gini_index(maps).tolist() == pytest.approx(expected, abs=1e-6)  # Quantus adds 1e-7 to every value
    other = torch.rand(4, 7, 5, generator=g, dtype=torch.float64)
    expected = quantus.functions.similarity_func.correlation_spearman(maps.flatten(1).numpy(), other.flatten(1).numpy(),
                                                                      batched=True)  # fmt: skip
    assert spearman(maps, other).tolist() == pytest.approx(expected.tolist(), abs=1e-12)


class Linear(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x * self.weight).flatten(1).sum(1, keepdim=True)
        return torch.cat([score, -score], dim=1)


def _zero_fill(arr: np.ndarray, indices: np.ndarray, indexed_axes: object = None, **kwargs: object) -> np.ndarray:
    out = arr.copy()
    np.put_along_axis(out, indices, 0.0, axis=1)
    return out


def test_region_perturbation_equals_quantus_on_a_grid_that_does_not_tile() -> None:
    """13 x 13 images in 5 x 5 regions (a centred grid with partial border cells), filled with 0."""
    g = torch.Generator().manual_seed(1)
    model = Linear(torch.randn(1, 1, 13, 13, generator=g)).eval()
    images = torch.rand(3, 1, 13, 13, generator=g)
    heat = torch.rand(3, 13, 13, generator=g)
    target = torch.zeros(3, dtype=torch.long)
    scores, _ = perturbation_curve(model, images, heat, target, steps=6, patch=5, order="morf", fill="black")
    metric = quantus.RegionPerturbation(patch_size=5, regions_evaluation=6, order="morf", normalise=False,
                                        perturb_func=_zero_fill, disable_warnings=True)  # fmt: skip
    drops = metric(model=model, x_batch=images.numpy(), y_batch=target.numpy(), a_batch=heat[:, None].numpy(),
                   device="cpu", channel_first=True, softmax=False)  # fmt: skip
    ours = (scores[:, :1] - scores[:, 1:]).detach().numpy()
    assert np.allclose(np.array(drops), ours, atol=1e-4)


class FixedLinear(nn.Linear):
    """reset_parameters sets a fixed pattern, so both randomisation drivers make the same models."""

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.copy_(torch.linspace(-1, 1, self.weight.numel()).view_as(self.weight).flip(0))
            if self.bias is not None:
                self.bias.fill_(0.1)


@pytest.mark.parametrize(("order", "quantus_order"), [("cascading", "top_down"), ("independent", "independent")])
def test_model_randomisation_equals_quantus_mprt(order: str, quantus_order: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), FixedLinear(48, 16), nn.ReLU(), FixedLinear(16, 16), nn.ReLU(),
                          FixedLinear(16, 4))  # fmt: skip
    for layer in model:
        if isinstance(layer, FixedLinear):
            nn.init.normal_(layer.weight)
    model.eval()
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    target = model(x).argmax(1)

    def maps(m: nn.Module, images: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"gradient": to_heatmap(explain(m, images, t, "gradient"), "gradient")}

    ours = model_randomisation(model, x, target, maps, order=order, layers="all", measures=("spearman",))
    mprt = quantus.MPRT(layer_order=quantus_order, abs=False, normalise=False, disable_warnings=True)
    theirs = evaluate(mprt, model, x, target, "gradient")
    for step_layer, part in ours[ours["step"] > 0].groupby("layer"):
        assert part.sort_values("image")["value"].tolist() == pytest.approx(theirs[step_layer], abs=1e-6), step_layer
    assert set(theirs) - {"original"} == set(ours["layer"]) - {""}


def test_adapter_runs_a_quantus_metric_on_lrp() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()  # fmt: skip
    x = torch.rand(2, 3, 8, 8)
    target = model(x).argmax(1)
    maps = explain_func("lrp_epsilon")(model, x.numpy(), target.numpy())
    assert maps.shape == (2, 1, 8, 8)
    assert np.allclose(maps[:, 0], to_heatmap(explain(model, x, target, "lrp_epsilon"), "lrp_epsilon").numpy())
    scores = evaluate(quantus.Sparseness(disable_warnings=True), model, x, target, "lrp_epsilon")
    assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)
