"""Sample and regional projections recover planted structure; knowledge points by definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import vonmises_fisher

from explainlab.methods.knowledge_points import (
    LinearKappa,
    RegionalImportance,
    RegionalProjection,
    SampleProjection,
    calibrate_strength,
    knowledge_points,
    regional_log_posterior,
    regions,
    strength_scale,
    vmf_log_posterior,
)


@pytest.fixture(scope="module")
def planted() -> dict:
    """Features f = A g of a known vMF mixture in 3-D (κ(l) = l) and its exact posteriors."""
    rng = np.random.default_rng(0)
    classes, n, d = 4, 1500, 20
    mu = rng.normal(size=(classes, 3))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    labels = rng.integers(0, classes, n)
    strength = rng.uniform(0.5, 5, n)
    orient = np.stack(
        [vonmises_fisher(mu[y], s).rvs(1, random_state=rng)[0] for y, s in zip(labels, strength, strict=True)]
    )
    g = torch.tensor(orient * strength[:, None])
    features = g @ torch.tensor(rng.normal(size=(d, 3))).T
    prior = torch.full((classes,), 1 / classes, dtype=torch.float64)
    probs = vmf_log_posterior(g, prior.log(), torch.tensor(mu), LinearKappa()).exp()
    return {"features": features, "probs": probs, "mu": torch.tensor(mu), "labels": torch.tensor(labels)}


def test_sample_projection_recovers_the_planted_mixture(planted: dict) -> None:
    proj = SampleProjection(3, rounds=20, steps=20).fit(planted["features"], planted["probs"])
    assert proj.history_[-1] < 0.005 < proj.history_[0]
    # Class directions agree up to a rotation: compare their Gram matrices.
    gram = proj.directions_ @ proj.directions_.T
    assert (gram - planted["mu"] @ planted["mu"].T).abs().max() < 0.1
    assert proj.predict_proba(planted["features"]).sum(1).tolist() == pytest.approx([1.0] * 1500)
    again = SampleProjection(3, rounds=20, steps=20).fit(planted["features"], planted["probs"])
    assert torch.equal(again.M_, proj.M_)  # seeded: repeatable


def test_fitted_kappa_projection_also_fits(planted: dict) -> None:
    # κ refitted by MLE each round is not the KL-optimal κ, so the fit settles higher than with
    # κ(l) = l (one reason linear is the default); it must still explain most of the posterior.
    proj = SampleProjection(3, kappa="fitted", rounds=10, steps=20).fit(planted["features"], planted["probs"])
    assert proj.history_[-1] < min(0.1, 0.3 * proj.history_[0])
    minibatch = SampleProjection(3, rounds=10, steps=20, batch_size=256).fit(planted["features"], planted["probs"])
    assert minibatch.history_[-1] < 0.05


def test_sample_projection_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        SampleProjection().fit(torch.tensor([[float("nan"), 1.0]]), torch.tensor([[1.0]]))
    with pytest.raises(ValueError, match="expected features"):
        SampleProjection().fit(torch.ones(3, 2), torch.ones(4, 2))


def test_knowledge_points_match_a_direct_count() -> None:
    torch.manual_seed(0)
    h = 3 * torch.randn(6, 5, 3, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    mu = torch.nn.functional.normalize(torch.randn(3, 3, dtype=torch.float64), dim=1)
    prior = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    found = knowledge_points(h, labels, prior.log(), mu, LinearKappa(), tau=0.6, scale=0.5)
    points = reliable = 0
    for n in range(6):
        for r in range(5):
            x = 0.5 * h[n, r]
            post = [float(prior[c] * torch.exp(x.norm() * torch.dot(x / x.norm(), mu[c]))) for c in range(3)]
            best = int(np.argmax(post))
            if max(post) / sum(post) > 0.6:
                points += 1
                reliable += best == int(labels[n])
    assert (found.n_points, found.n_reliable) == (points, reliable) and 0 < points < 30
    assert found.ratio == pytest.approx(reliable / points)
    assert strength_scale(h, 2 * h) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="all regional features are zero"):
        strength_scale(torch.zeros(2, 3, 3), h)


def test_regional_posterior_with_linear_kappa_is_that_of_the_weighted_mean_feature() -> None:
    torch.manual_seed(0)
    h = 2 * torch.randn(5, 7, 3, dtype=torch.float64)
    w = torch.rand(5, 7, dtype=torch.float64)
    w = w / w.sum(1, keepdim=True)
    mu = torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64), dim=1)
    log_prior = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64).log()
    mean_feature = (w[..., None] * h).sum(1)
    expected = vmf_log_posterior(mean_feature, log_prior, mu, LinearKappa())
    assert torch.allclose(regional_log_posterior(h, w, log_prior, mu, LinearKappa()), expected, atol=1e-12)


def test_strength_calibration_recovers_a_planted_scale() -> None:
    """P(y|x) generated from the regions at scale 2.5: the fit finds 2.5 and a KL of 0."""
    torch.manual_seed(1)
    h = torch.randn(40, 6, 3, dtype=torch.float64)
    w = torch.rand(40, 6, dtype=torch.float64)
    w = w / w.sum(1, keepdim=True)
    mu = torch.nn.functional.normalize(torch.randn(5, 3, dtype=torch.float64), dim=1)
    log_prior = torch.full((5,), 0.2, dtype=torch.float64).log()
    probs = regional_log_posterior(2.5 * h, w, log_prior, mu, LinearKappa()).exp()
    scale, kl = calibrate_strength(h.float(), w.float(), probs.float(), log_prior, mu, LinearKappa())
    assert scale == pytest.approx(2.5, rel=1e-3) and kl < 1e-6
    with pytest.raises(ValueError, match="all regional features are zero"):
        calibrate_strength(torch.zeros(2, 3, 3), w[:2, :3], probs[:2], log_prior, mu, LinearKappa())
    with pytest.raises(ValueError, match="NaN"):
        calibrate_strength(torch.full((2, 3, 3), float("nan")), w[:2, :3], probs[:2], log_prior, mu, LinearKappa())


def _planted_regions(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Region 0 carries the class (a prototype in channels 0-3); the other regions are noise."""
    g = torch.Generator().manual_seed(seed)
    n, classes, k, side = 32, 4, 8, 4
    labels = torch.arange(n) % classes
    fmap = 0.3 * torch.rand(n, k, side, side, generator=g)
    fmap[:, :classes, 0, 0] += 3 * torch.nn.functional.one_hot(labels, classes)
    return fmap, 5.0 * torch.nn.functional.one_hot(labels, classes).float(), labels


def test_region_importance_finds_the_informative_region_and_channels() -> None:
    fmap, logits, _ = _planted_regions()
    w, v = RegionalImportance(steps=40, batch_size=32).fit_transform(fmap, logits)
    assert w.shape == (32, 16) and v.shape == (32, 8)
    assert torch.allclose(w.sum(1), torch.ones(32)) and (w >= 0).all() and (v >= 0).all()
    assert w[:, 0].mean() > 2 / 16 and int(w.mean(0).argmax()) == 0  # the most important region, 2x+ uniform
    assert v[:, :4].sum(1).mean() > 0.6  # the class channels carry most of the weight


def test_regional_projection_aligns_regions_with_the_sample_feature() -> None:
    fmap, logits, labels = _planted_regions()
    g = torch.nn.functional.one_hot(labels, 4).float()[:, :3] * 2 + 0.1
    importance = torch.zeros(32, 16)
    importance[:, 0] = 1.0
    before = RegionalProjection(3, epochs=0).fit(fmap, logits, g, importance)
    after = RegionalProjection(3, epochs=60, alpha=1.0, lr=0.05, batch_size=16).fit(fmap, logits, g, importance)
    assert after.history_[-1] < after.history_[0]

    def alignment(proj: RegionalProjection) -> float:
        h = proj.transform(fmap)[:, 0]
        return float(torch.nn.functional.cosine_similarity(h, g, dim=1).mean())

    assert alignment(after) > alignment(before) + 0.2
    assert regions(fmap).shape == (32, 16, 8)
