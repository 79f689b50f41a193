"""Knowledge points (paper 002, Sec. 3.4): regional features whose class posterior is confident."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy.optimize import minimize_scalar

from explainlab.errors import check_float

from .vmf import vmf_log_posterior


@dataclass
class KnowledgePoints:
    """points, reliable: (N, R) bool; predicted: (N, R) class of each region's largest posterior."""

    points: torch.Tensor
    reliable: torch.Tensor
    predicted: torch.Tensor

    @property
    def n_points(self) -> int:
        return int(self.points.sum())

    @property
    def n_reliable(self) -> int:
        return int(self.reliable.sum())

    @property
    def ratio(self) -> float:
        """Reliable / all knowledge points (NaN when there are none)."""
        return self.n_reliable / self.n_points if self.n_points else float("nan")


def strength_scale(h: torch.Tensor, reference: torch.Tensor) -> float:
    """Factor that gives the regional features `h` (..., d') the mean strength of `reference` (..., d'),
    so one τ can be used across layers (the paper normalises strengths to a reference layer)."""
    own = h.norm(dim=-1).mean()
    if own == 0:
        raise ValueError("all regional features are zero: no strength to normalise")
    return float(reference.norm(dim=-1).mean() / own)


def regional_log_posterior(
    h: torch.Tensor, w: torch.Tensor, log_prior: torch.Tensor, directions: torch.Tensor, kappa
) -> torch.Tensor:
    """log q(y | x) (N, C) of a sample from its regions as a product of experts weighted by importance:
    log_softmax_y Σ_r w^r log p(y | h^(r)). h: (N, R, d'); w: (N, R), rows summing to 1.

    With κ(l) = l this is the posterior of the importance-weighted mean regional feature Σ_r w^r h^(r),
    the regional counterpart of the sample feature g (the pooled feature is the mean over regions)."""
    per_region = vmf_log_posterior(h, log_prior.to(h), directions.to(h), kappa)
    return torch.log_softmax((w.to(h)[..., None] * per_region).sum(1), dim=-1)


def calibrate_strength(
    h: torch.Tensor,
    w: torch.Tensor,
    probs: torch.Tensor,
    log_prior: torch.Tensor,
    directions: torch.Tensor,
    kappa,
    *,
    bounds: tuple[float, float] = (1e-4, 1e4),
) -> tuple[float, float]:
    """The strength scale s that makes the regions explain the DNN as the sample projection does:
    s = argmin_s E_x KL(P(y|x) ‖ q_s(y|x)), q_s the `regional_log_posterior` of s · h (float64,
    bounded 1-D search on log s). probs: the DNN's softmax (N, C). Returns (s, KL at s).

    The regional projection's own scale is set by the similarity temperature of L_similarity, an
    arbitrary constant, so τ needs this calibration to mean the same in every run."""
    h64, w64, target = h.double(), w.double(), probs.double()
    prior, dirs = log_prior.double(), directions.double()
    if not torch.isfinite(h64).all():
        raise ValueError("regional features contain NaN/inf: cannot calibrate their strength")
    if h64.norm(dim=-1).max() == 0:
        raise ValueError("all regional features are zero: no strength to calibrate")
    entropy_term = torch.xlogy(target, target).sum(1)

    def kl(log_scale: float) -> float:
        log_q = regional_log_posterior(math.exp(log_scale) * h64, w64, prior, dirs, kappa)
        return float((entropy_term - (target * log_q).sum(1)).mean())

    found = minimize_scalar(kl, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                            options={"xatol": 1e-6})  # fmt: skip
    return math.exp(found.x), float(found.fun)


def knowledge_points(
    h: torch.Tensor,
    labels: torch.Tensor,
    log_prior: torch.Tensor,
    directions: torch.Tensor,
    kappa,
    *,
    tau: float = 0.4,
    scale: float = 1.0,
) -> KnowledgePoints:
    """A region is a knowledge point if max_c p(y=c | scale · h^(r)) > τ, reliable if that c is the
    sample's true label.

    h: (N, R, d'); labels: (N,); log_prior (C,), directions (C, d'), kappa: from a SampleProjection.
    """
    check_float("tau", tau, low=0.0, high=1.0)
    probs = vmf_log_posterior(scale * h, log_prior.to(h), directions.to(h), kappa).exp()
    best, predicted = probs.max(dim=-1)
    points = best > tau
    return KnowledgePoints(points, points & (predicted == labels.to(h.device)[:, None]), predicted)
