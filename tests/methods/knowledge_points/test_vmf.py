"""vMF normalisers against scipy, κ estimation on sampled vMF data, the posterior's closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import vonmises_fisher

from explainlab.errors import ConfigValueError
from explainlab.methods.knowledge_points import (
    FittedKappa,
    LinearKappa,
    kappa_from_resultant,
    log_vmf_normaliser,
    make_kappa,
    vmf_log_posterior,
)


@pytest.mark.parametrize("dim", [2, 3, 4])
@pytest.mark.parametrize("kappa", [0.01, 1.0, 7.5, 200.0])
def test_log_normaliser_matches_scipy(dim: int, kappa: float) -> None:
    mu = np.eye(dim)[0]
    expected = vonmises_fisher(mu, kappa).logpdf(mu) - kappa  # log C_d(κ) = log p(μ) − κ
    got = log_vmf_normaliser(torch.tensor([kappa], dtype=torch.float64), dim).item()
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-6)
    with pytest.raises(ValueError, match="2, 3 and 4"):
        log_vmf_normaliser(torch.tensor([1.0]), 5)


def test_kappa_from_resultant_inverts_sampled_concentrations() -> None:
    rng = np.random.default_rng(0)
    for kappa in (2.0, 10.0, 50.0):
        samples = vonmises_fisher(np.eye(3)[2], kappa).rvs(20000, random_state=rng)
        assert kappa_from_resultant(samples[:, 2].mean(), 3) == pytest.approx(kappa, rel=0.05)


def test_fitted_kappa_recovers_strength_dependent_concentration() -> None:
    """Samples with κ(l) = 2 l: the binned estimate is within 15 % of the truth at the bin centres."""
    rng = np.random.default_rng(1)
    strength = rng.uniform(1, 6, 6000)
    mu = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    labels = rng.integers(0, 2, len(strength))
    orient = np.stack(
        [vonmises_fisher(mu[y], 2 * s).rvs(1, random_state=rng)[0] for y, s in zip(labels, strength, strict=True)]
    )
    kappa = FittedKappa(dim=3, bins=8).fit(
        torch.tensor(strength), torch.tensor(orient @ mu.T), torch.nn.functional.one_hot(torch.tensor(labels)).double()
    )
    assert kappa.kappas_ == pytest.approx(2 * kappa.centres_, rel=0.15)
    assert np.all(np.diff(kappa.kappas_) >= 0)
    lengths = torch.tensor([0.0, 0.5, 3.0, 10.0], dtype=torch.float64)
    values = kappa(lengths)
    assert values[0] == 0 and torch.all(values.diff() > 0)  # κ(0) = 0 and increasing beyond the bins


def test_posterior_is_the_softmax_of_eq6() -> None:
    g = torch.randn(5, 3, dtype=torch.float64)
    mu = torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64), dim=1)
    prior = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    got = vmf_log_posterior(g, prior.log(), mu, LinearKappa()).exp()
    for n in range(5):
        length = g[n].norm()
        numer = torch.stack([prior[c] * torch.exp(length * (g[n] @ mu[c]) / length) for c in range(4)])
        assert got[n].tolist() == pytest.approx((numer / numer.sum()).tolist())
    with pytest.raises(ConfigValueError, match="method.kappa"):
        make_kappa("cubic", 3)
