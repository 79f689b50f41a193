"""Knowledge points (paper 002, Sec. 3.4): regional features whose class posterior is confident."""

from __future__ import annotations

from dataclasses import dataclass

import torch

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
