"""Knowledge points (paper 002, Sec. 3.4): regional features whose class posterior is confident."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
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


def normalised_scales(
    h_by_layer: Mapping[str, torch.Tensor], reference_layer: str, reference_scale: float = 1.0
) -> dict[str, float]:
    """The paper's normalisation (Sec. 4): every layer's scale gives its regional features the mean
    strength E_{x,r} ‖h^(r)‖ of the reference layer's features times `reference_scale`.

    reference_scale 1 is the paper's own normalisation (the reference layer keeps the strength the
    regional projection learned); the `calibrate_strength` scale of the reference layer gives the
    calibrated one. h_by_layer: {layer: (N, R, d')}. Returns {layer: scale}.
    """
    if reference_layer not in h_by_layer:
        raise ValueError(f"reference layer {reference_layer!r} is not among {list(h_by_layer)}")
    reference = reference_scale * h_by_layer[reference_layer]
    return {layer: strength_scale(h, reference) for layer, h in h_by_layer.items()}


def point_counts(
    h_by_layer: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    log_prior: torch.Tensor,
    directions: torch.Tensor,
    kappa,
    scales: Mapping[str, Mapping[str, float]],
    *,
    tau: float = 0.4,
    saturation: float = 0.7,
) -> pd.DataFrame:
    """Knowledge points of every layer under several strength normalisations, side by side.

    scales: {normalisation name: {layer: scale}}, e.g. {'paper': normalised_scales(h, ref),
    'calibrated': normalised_scales(h, ref, s_ref)}. One row per (normalisation, layer) with
    regions (N·R), n_points, n_reliable, fraction (= n_points / regions), ratio (reliable / points),
    chance_ratio (the ratio a region would reach if its predicted class were independent of the image's
    label: Σ_c share of points predicting c · share of points from images of class c), lift
    (ratio / chance_ratio) and saturated (fraction >= `saturation`: most regions pass τ, so the
    count no longer selects regions; read such a layer's count with its lift).
    """
    check_float("saturation", saturation, low=0.0, high=1.0)
    rows = []
    for name, per_layer in scales.items():
        for layer, h in h_by_layer.items():
            found = knowledge_points(h, labels, log_prior, directions, kappa, tau=tau, scale=per_layer[layer])
            n_classes = len(log_prior)
            image_labels = labels.to(h.device)[:, None].expand_as(found.points)[found.points]
            predicted = found.predicted[found.points]
            share_pred = torch.bincount(predicted, minlength=n_classes).double()
            share_label = torch.bincount(image_labels, minlength=n_classes).double()
            points = found.n_points
            chance = float((share_pred * share_label).sum() / points**2) if points else float("nan")
            fraction = points / found.points.numel()
            rows.append(
                {
                    "normalisation": name,
                    "layer": layer,
                    "scale": float(per_layer[layer]),
                    "regions": found.points.numel(),
                    "n_points": points,
                    "n_reliable": found.n_reliable,
                    "fraction": fraction,
                    "ratio": found.ratio,
                    "chance_ratio": chance,
                    "lift": found.ratio / chance if points and chance > 0 else float("nan"),
                    "saturated": fraction >= saturation,
                }
            )
    return pd.DataFrame(rows)
