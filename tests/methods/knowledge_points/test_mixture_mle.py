"""The {π, μ} update of the sample projection is the maximum-likelihood one (κ(‖g‖)-weighted)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import vonmises_fisher

from explainlab.methods.knowledge_points import (
    FittedKappa,
    LinearKappa,
    SampleProjection,
    mixture_log_likelihood,
    mixture_mle,
)


def _sample(seed: int = 0, n: int = 400, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Strength-dependent vMF mixture in 3-D (κ(l) = l), strengths spread over 0.2-8, and soft
    responsibilities (the true class with 0.7, the rest spread)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(classes, 3))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    labels = rng.integers(0, classes, n)
    strength = rng.uniform(0.2, 8.0, n)
    orient = np.stack([vonmises_fisher(mu[y], s).rvs(1, random_state=rng)[0] for y, s in zip(labels, strength,
                                                                                             strict=True)])  # fmt: skip
    resp = np.full((n, classes), 0.3 / (classes - 1))
    resp[np.arange(n), labels] = 0.7
    return torch.tensor(orient * strength[:, None]), torch.tensor(resp)


def _direct_mle(g: torch.Tensor, resp: torch.Tensor, kappa) -> tuple[torch.Tensor, torch.Tensor]:
    """μ_y = Σ_i γ_iy κ(l_i) o_i / ‖·‖ and π_y = mean_i γ_iy, one sample and class at a time (float64)."""
    n, classes = resp.shape
    mu, prior = [], []
    for y in range(classes):
        total = torch.zeros(g.shape[1], dtype=torch.float64)
        for i in range(n):
            length = math.sqrt(sum(float(v) ** 2 for v in g[i]))
            total += float(resp[i, y]) * float(kappa(torch.tensor(length, dtype=torch.float64))) * g[i] / length
        mu.append(total / total.norm())
        prior.append(float(resp[:, y].sum()) / n)
    return torch.tensor(prior, dtype=torch.float64).log(), torch.stack(mu)


@pytest.mark.parametrize("kappa", [LinearKappa(), LinearKappa(3.0)])
def test_mixture_mle_equals_the_direct_formula(kappa) -> None:
    g, resp = _sample(n=60)
    log_prior, mu = mixture_mle(g, resp, kappa)
    direct_prior, direct_mu = _direct_mle(g, resp, kappa)
    assert torch.allclose(log_prior, direct_prior, atol=1e-12) and torch.allclose(mu, direct_mu, atol=1e-12)


def test_fitted_kappa_weights_too() -> None:
    g, resp = _sample(n=300)
    _, first = mixture_mle(g, resp, LinearKappa())
    kappa = FittedKappa(dim=3).fit(g.norm(dim=1), torch.nn.functional.normalize(g, dim=1) @ first.T, resp)
    log_prior, mu = mixture_mle(g[:60], resp[:60], kappa)
    direct_prior, direct_mu = _direct_mle(g[:60], resp[:60], kappa)
    assert torch.allclose(mu, direct_mu, atol=1e-12) and torch.allclose(log_prior, direct_prior, atol=1e-12)


def test_weighted_update_has_higher_likelihood_than_the_unweighted_mean() -> None:
    g, resp = _sample()
    kappa = LinearKappa()
    log_prior, mu = mixture_mle(g, resp, kappa)
    orient = torch.nn.functional.normalize(g, dim=1)
    unweighted = torch.nn.functional.normalize(resp.T @ orient, dim=1)  # the earlier update
    ours = mixture_log_likelihood(g, log_prior, mu, kappa, responsibilities=resp)
    theirs = mixture_log_likelihood(g, log_prior, unweighted, kappa, responsibilities=resp)
    assert ours > theirs + 1e-3
    # it is the maximum: any small rotation of a direction lowers the expected log-likelihood
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        moved = torch.nn.functional.normalize(mu + 0.02 * torch.randn(mu.shape, generator=gen, dtype=mu.dtype), dim=1)
        assert mixture_log_likelihood(g, log_prior, moved, kappa, responsibilities=resp) < ours
    # and as an EM step (responsibilities = the mixture's own posterior) the observed likelihood rises
    posterior = torch.softmax(log_prior + kappa(g.norm(dim=1))[:, None] * orient @ unweighted.T, dim=1)
    em_prior, em_mu = mixture_mle(g, posterior, kappa)
    before = mixture_log_likelihood(g, log_prior, unweighted, kappa)
    assert mixture_log_likelihood(g, em_prior, em_mu, kappa) >= before


def test_mixture_log_likelihood_matches_scipy() -> None:
    g, resp = _sample(n=20)
    log_prior = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64).log()
    mu = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0.6, 0.8]], dtype=torch.float64),
                                       dim=1)  # fmt: skip
    expected = []
    for x in g.numpy():
        length = np.linalg.norm(x)
        dens = [math.exp(log_prior[c]) * vonmises_fisher(mu[c].numpy(), length).pdf(x / length) for c in range(3)]
        expected.append(math.log(sum(dens)))
    got = mixture_log_likelihood(g, log_prior, mu, LinearKappa())
    assert float(got) == pytest.approx(float(np.mean(expected)), rel=1e-9)


def test_sample_projection_uses_the_weighted_update() -> None:
    g, resp = _sample(n=200)
    features = g @ torch.randn(3, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    proj = SampleProjection(3, rounds=2, steps=3).fit(features, resp)
    log_prior, mu = mixture_mle(proj.transform(features), resp, proj.kappa_)
    assert torch.allclose(proj.directions_, mu, atol=1e-12) and torch.allclose(proj.log_prior_, log_prior)
