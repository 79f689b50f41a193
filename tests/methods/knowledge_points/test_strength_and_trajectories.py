"""The strength-calibration policy, Table 1's baselines and the adversarial trajectory types
(`methods/knowledge_points/strength.py`, `baselines.py`, `adversarial.py`)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from explainlab.methods.knowledge_points import LinearKappa, calibrate_strength, strength_scale
from explainlab.methods.knowledge_points.adversarial import class_posterior, trajectory_analysis
from explainlab.methods.knowledge_points.baselines import embedding_norms, entropy
from explainlab.methods.knowledge_points.strength import strength_scales


def test_uninformative_regions_are_reported(caplog) -> None:
    """Regions whose orientations carry nothing about the DNN's answers calibrate to a near-zero
    strength; the study says so instead of silently reporting no knowledge points."""
    g = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(4, 3, generator=g), dim=1)
    projection = SimpleNamespace(log_prior_=torch.full((4,), 0.25).log(), kappa_=LinearKappa(), directions_=directions)
    probs = torch.nn.functional.one_hot(torch.arange(40) % 4, 4).float() * 0.97 + 0.0075
    h = torch.randn(40, 9, 3, generator=g)
    with caplog.at_level("WARNING"):
        scales, kl = strength_scales("calibrated", ["conv1"], "conv1", {"conv1": h},
                                     {"conv1": torch.full((40, 9), 1 / 9)}, probs, projection.log_prior_,
                                     projection.directions_, projection.kappa_)  # fmt: skip
    assert "conv1: its regional features explain the DNN's answers hardly better than the class prior" in caplog.text
    assert scales["conv1"] < 0.2 and kl["conv1"] > 1.0  # about log 4 = 1.39: no better than the prior


@pytest.mark.parametrize("strength", ["calibrated", "per_layer", "learned"])
def test_strength_policies_follow_their_definitions(strength: str) -> None:
    g = torch.Generator().manual_seed(1)
    directions = torch.nn.functional.normalize(torch.randn(3, 3, generator=g), dim=1)
    prior, kappa = torch.full((3,), 1 / 3).log(), LinearKappa()
    labels = torch.arange(30) % 3
    probs = torch.nn.functional.one_hot(labels, 3).float() * 0.9 + 0.1 / 3
    w = torch.full((30, 4), 0.25)
    projected = {"a": directions[labels][:, None, :].expand(30, 4, 3) * 2.0, "b": torch.randn(30, 4, 3, generator=g)}
    weights = {"a": w, "b": w}
    scales, kl = strength_scales(strength, ["a", "b"], "a", projected, weights, probs, prior, directions, kappa)
    if strength == "learned":
        assert kl == {} and scales["a"] == pytest.approx(1.0)
        assert scales["b"] == pytest.approx(strength_scale(projected["b"], projected["a"]))
        return
    s_a, kl_a = calibrate_strength(projected["a"], w, probs, prior, directions, kappa)
    assert scales["a"] == pytest.approx(s_a) and kl["a"] == pytest.approx(kl_a)
    if strength == "calibrated":  # every layer gets the calibrated reference's mean strength
        assert set(kl) == {"a"}
        strength_b = (scales["b"] * projected["b"]).norm(dim=2).mean()
        assert float(strength_b) == pytest.approx(float((s_a * projected["a"]).norm(dim=2).mean()), rel=1e-5)
    else:
        assert set(kl) == {"a", "b"}


def test_entropy_and_embedding_norms() -> None:
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert torch.allclose(entropy(probs), torch.tensor([0.0, np.log(2)], dtype=torch.float32))
    features = np.random.default_rng(0).normal(size=(20, 5))
    norms = embedding_norms(features, "pca", 5, seed=0)  # a full-rank PCA is a rotation of the centred data
    assert np.allclose(norms, np.linalg.norm(features - features.mean(0), axis=1))


def test_trajectory_types_of_planted_regions() -> None:
    """Two images, both attacked (class 0 -> 1); three regions with known posterior paths."""
    c_ori, c_adv = torch.tensor([0, 0]), torch.tensor([1, 1])

    def probs(p0: list[float]) -> torch.Tensor:  # (N=2, R=3, C=2): posterior of class 0 per region
        p = torch.tensor(p0)[None, :].expand(2, 3)
        return torch.stack([p, 1 - p], dim=2)

    # region 0: type 1 (0.9 for c_ori, then 0.9 for c_adv, important throughout)
    # region 1: type 2 (important before and after, unimportant (0.5/0.5) in between)
    # region 2: type 3 (unimportant before, important for c_adv after)
    steps = [probs([0.9, 0.9, 0.5]), probs([0.2, 0.5, 0.5]), probs([0.1, 0.1, 0.1])]
    h0 = torch.ones(2, 3, 2)
    features = {"conv": [h0, h0, 2 * h0]}
    rows, utilities = trajectory_analysis(features, {"conv": steps}, c_ori, c_adv, tau=0.6)
    row = rows.iloc[0]
    assert (row.type1, row.type2, row.type3, row.type4) == (2, 2, 2, 0)
    assert row.attacked == 2 and row.delta_orientation == pytest.approx(1.0) and row.delta_strength < 0
    assert sorted(utilities["utility"].round(3)) == [0.5, 0.5, 0.9, 0.9, 0.9, 0.9]
    assert torch.equal(class_posterior(steps[0], c_ori), torch.tensor([[0.9, 0.9, 0.5]] * 2))


def test_the_analysis_runs_on_layer_outputs_alone() -> None:
    """`KnowledgePointAnalysis` needs no model, Hydra or runner: layer outputs in, typed result out,
    the same numbers for the same seed."""
    from explainlab.methods.knowledge_points.analysis import KnowledgePointAnalysis, KnowledgePointResult

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(24) % 3
    maps = torch.randn(24, 4, 3, 3, generator=g).relu() + torch.nn.functional.one_hot(labels, 4)[:, :, None, None]
    logits = 3 * torch.nn.functional.one_hot(labels, 3) + torch.rand(24, 3, generator=g)
    outputs = {"conv": maps, "fc": maps.mean((2, 3)), "logits": logits, "labels": labels}
    analysis = KnowledgePointAnalysis(["conv"], "fc", "conv", sample_rounds=2, sample_steps=3, regional_epochs=2,
                                      importance_steps=3, batch_size=8, embeddings=("pca",))  # fmt: skip
    torch.manual_seed(0)
    one = analysis.analyse(outputs, name="toy", seed=0)
    torch.manual_seed(0)
    two = analysis.analyse(outputs, name="toy", seed=0)
    assert isinstance(one, KnowledgePointResult) and [r["layer"] for r in one.points] == ["conv"]
    assert (
        one.points[0]["regions"] == 9 and one.g.shape == (24, 3) and [r["method"] for r in one.corr] == ["ours", "pca"]
    )
    assert one.points == two.points and torch.equal(one.g, two.g)


def test_the_analysis_checks_its_options_and_reports_the_papers_checks() -> None:
    """Options are refused when built, under the caller's key prefix; one analysis gives Table 2 per
    image (layer, mean, std, n) and the counts under both normalisations (DRPR's Table 1 row: the
    study test)."""
    from explainlab.errors import ConfigValueError
    from explainlab.methods.knowledge_points.analysis import KnowledgePointAnalysis

    with pytest.raises(ConfigValueError, match=r"method\.kappa_tilde=0"):
        KnowledgePointAnalysis(kappa_tilde=0, key_prefix="method.")
    with pytest.raises(ConfigValueError, match=r"^saturation=1\.5"):
        KnowledgePointAnalysis(saturation=1.5)
    with pytest.raises(ConfigValueError, match=r"method\.embeddings"):
        KnowledgePointAnalysis(embeddings=["umap"], key_prefix="method.")
    with pytest.raises(ConfigValueError, match=r"method\.reference_layer"):
        KnowledgePointAnalysis(["conv1"], "fc1", "conv2", key_prefix="method.").resolved("small_cnn")
    assert KnowledgePointAnalysis().resolved("resnet20").extracted_layers == ["layer1", "layer2", "layer3"]

    g = torch.Generator().manual_seed(1)
    labels = torch.arange(24) % 3
    maps = torch.randn(24, 4, 3, 3, generator=g).relu() + torch.nn.functional.one_hot(labels, 4)[:, :, None, None]
    logits = 3 * torch.nn.functional.one_hot(labels, 3) + torch.rand(24, 3, generator=g)
    outputs = {"conv": maps, "fc": maps.mean((2, 3)), "logits": logits, "labels": labels}
    analysis = KnowledgePointAnalysis(["conv"], "fc", sample_rounds=2, sample_steps=3, regional_epochs=2,
                                      importance_steps=3, batch_size=8, kappa_tilde=50.0,
                                      saturation=0.0).resolved("toy")  # fmt: skip
    torch.manual_seed(0)
    found = analysis.analyse(outputs, name="toy", seed=0)
    assert [r["method"] for r in found.corr] == ["ours"]
    assert list(found.regional_corr.columns) == ["layer", "mean", "std", "n"] and found.regional_corr["n"][0] <= 24
    per_image = found.strength_corr["conv"]
    assert found.regional_corr["mean"][0] == pytest.approx(float(per_image[~per_image.isnan()].mean()))
    assert sorted(found.counts["normalisation"]) == ["calibrated", "paper"] and found.counts["saturated"].all()
    assert found.points[0]["saturated"] and found.grids["conv"] == (3, 3)
    calibrated = found.counts.set_index("normalisation").loc["calibrated"]
    assert calibrated["n_points"] == found.points[0]["n_points"]  # the study's default strength is the calibrated one
