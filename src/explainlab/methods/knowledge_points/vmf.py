"""von Mises-Fisher pieces of paper 002: log normalisers, the κ estimate from a mean resultant
length, the strength-dependent concentration κ(l) (Eq. 3), and the class posterior (Eq. 6)."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.isotonic import IsotonicRegression

from explainlab.errors import ConfigValueError


def log_vmf_normaliser(kappa: torch.Tensor, dim: int) -> torch.Tensor:
    """log C_d(κ) of the vMF density C_d(κ)·exp(κ μᵀo) on the unit sphere in R^dim, differentiable in κ.

    Exact closed forms for dim 2, 3, 4 (those the projections use); other dims raise.
    """
    kappa = kappa.clamp_min(1e-6)
    if dim == 2:
        return -math.log(2 * math.pi) - (torch.log(torch.special.i0e(kappa)) + kappa)
    if dim == 3:
        # C_3 = κ / (4π sinh κ); log sinh κ = κ + log(1 − e^{−2κ}) − log 2, stable for large κ.
        return torch.log(kappa) - math.log(4 * math.pi) - (kappa + torch.log(-torch.expm1(-2 * kappa)) - math.log(2))
    if dim == 4:
        return torch.log(kappa) - 2 * math.log(2 * math.pi) - (torch.log(torch.special.i1e(kappa)) + kappa)
    raise ValueError(f"the vMF normaliser is implemented for dimensions 2, 3 and 4, got {dim}")


def kappa_from_resultant(mean_resultant: np.ndarray | float, dim: int) -> np.ndarray:
    """κ ≈ R̄ (d − R̄²) / (1 − R̄²), the maximum-likelihood approximation of Banerjee et al. (2005).

    mean_resultant: R̄ in [0, 1), the length of the mean of unit vectors (or the mean cosine to the
    known mean direction)."""
    r = np.clip(np.asarray(mean_resultant, dtype=float), 0.0, 1 - 1e-9)
    return r * (dim - r**2) / (1 - r**2)


class LinearKappa:
    """κ(l) = scale · l: the posterior becomes softmax(log π + scale · g·μ_y), a linear classifier on g."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def fit(self, *_: object, **__: object) -> LinearKappa:
        return self

    def __call__(self, strength: torch.Tensor) -> torch.Tensor:
        return self.scale * strength


class FittedKappa:
    """κ(l) estimated from data (Eq. 3: features of similar strength share a concentration).

    Strengths are split into `bins` quantile bins; in each, κ is estimated from the mean cosine of the
    orientations to their class directions (`kappa_from_resultant`, weighted by class
    responsibilities), made increasing in l by isotonic regression, and interpolated linearly
    between bin centres. Below the first and above the last centre κ is proportional to l, so κ(0) = 0
    and κ keeps increasing. After `fit`: `centres_` and `kappas_` ((bins,) float64 arrays).
    """

    def __init__(self, dim: int = 3, bins: int = 10, min_kappa: float = 1e-3) -> None:
        self.dim, self.bins, self.min_kappa = dim, bins, min_kappa

    @torch.no_grad()
    def fit(self, strength: torch.Tensor, cosines: torch.Tensor, responsibilities: torch.Tensor) -> FittedKappa:
        """strength: (N,) ‖g‖; cosines: (N, C) cos(g, μ_c); responsibilities: (N, C) rows summing to 1."""
        order = strength.argsort()
        chunks = torch.tensor_split(order, min(self.bins, len(order)))
        centres, kappas = [], []
        for idx in chunks:
            if len(idx) == 0:
                continue
            resultant = (responsibilities[idx] * cosines[idx]).sum(1).mean().clamp(0, 1 - 1e-6)
            centres.append(strength[idx].double().median().item())
            kappas.append(float(kappa_from_resultant(resultant.item(), self.dim)))
        iso = IsotonicRegression(increasing=True, y_min=self.min_kappa).fit(centres, kappas)
        self.centres_ = np.asarray(centres)
        self.kappas_ = iso.predict(self.centres_)
        return self

    def __call__(self, strength: torch.Tensor) -> torch.Tensor:
        centres = torch.as_tensor(self.centres_, dtype=strength.dtype, device=strength.device)
        kappas = torch.as_tensor(self.kappas_, dtype=strength.dtype, device=strength.device)
        inside = torch.searchsorted(centres, strength.detach().contiguous()).clamp(1, len(centres) - 1)
        lo, hi = centres[inside - 1], centres[inside]
        frac = (strength - lo) / (hi - lo).clamp_min(1e-12)
        between = kappas[inside - 1] + frac * (kappas[inside] - kappas[inside - 1])
        below = kappas[0] * strength / centres[0].clamp_min(1e-12)
        above = kappas[-1] * strength / centres[-1].clamp_min(1e-12)
        return torch.where(strength < centres[0], below, torch.where(strength > centres[-1], above, between))


def make_kappa(kind: str, dim: int, bins: int = 10) -> LinearKappa | FittedKappa:
    """'linear' or 'fitted' (see the classes); `dim` is the projected dimension d'."""
    if kind == "linear":
        return LinearKappa()
    if kind == "fitted":
        return FittedKappa(dim=dim, bins=bins)
    raise ConfigValueError("method.kappa", kind, "linear or fitted")


def vmf_log_posterior(g: torch.Tensor, log_prior: torch.Tensor, directions: torch.Tensor, kappa) -> torch.Tensor:
    """log Q(y|g) of Eq. 6: log_softmax_y(log π_y + κ(‖g‖) · cos(g, μ_y)). The vMF normaliser depends
    on ‖g‖ only and cancels.

    g: (..., d'); log_prior: (C,); directions: (C, d') unit rows; returns (..., C).
    """
    strength = g.norm(dim=-1)
    cos = (g / strength.clamp_min(1e-12).unsqueeze(-1)) @ directions.T
    return torch.log_softmax(log_prior + kappa(strength).unsqueeze(-1) * cos, dim=-1)


def mixture_mle(g: torch.Tensor, responsibilities: torch.Tensor, kappa) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum-likelihood {π, μ} of the strength-dependent vMF mixture (Eq. 5) given responsibilities.

    With p(g | y) = p(l) C_d(κ(l)) exp(κ(l) μ_yᵀo), l = ‖g‖, o = g / l, the expected complete-data
    log-likelihood Σ_i Σ_y γ_iy [log π_y + κ(l_i) μ_yᵀo_i] + const is maximised by
    π_y = mean_i γ_iy and μ_y ∝ Σ_i γ_iy κ(l_i) o_i: each sample's orientation is weighted by its own
    concentration (strong, confident samples count more). g: (N, d'); responsibilities: (N, C) rows
    summing to 1; kappa: κ(l) callable. Returns (log π (C,), unit μ (C, d')).
    """
    strength = g.norm(dim=1)
    orient = g / strength.clamp_min(1e-12)[:, None]
    prior = responsibilities.mean(0).clamp_min(1e-12)
    resultant = responsibilities.T @ (kappa(strength)[:, None] * orient)
    return (prior / prior.sum()).log(), resultant / resultant.norm(dim=1, keepdim=True).clamp_min(1e-12)


def mixture_log_likelihood(
    g: torch.Tensor, log_prior: torch.Tensor, directions: torch.Tensor, kappa, *,
    responsibilities: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Mean log-likelihood of the orientations under the mixture of Eq. 5 (the category-independent
    strength prior p(l) left out: it does not depend on {π, μ}).

    Without `responsibilities`: mean_i log Σ_y π_y C_d(κ(l_i)) exp(κ(l_i) μ_yᵀo_i) (observed data);
    with them (N, C): the expected complete-data log-likelihood mean_i Σ_y γ_iy log[π_y C_d(κ(l_i))
    exp(κ(l_i) μ_yᵀo_i)], the objective `mixture_mle` maximises. g: (N, d'). Returns a 0-d tensor.
    """
    strength = g.norm(dim=1)
    k = kappa(strength)
    cos = (g / strength.clamp_min(1e-12)[:, None]) @ directions.T
    joint = log_prior + log_vmf_normaliser(k, g.shape[1])[:, None] + k[:, None] * cos
    if responsibilities is None:
        return torch.logsumexp(joint, dim=1).mean()
    return (responsibilities * joint).sum(1).mean()
