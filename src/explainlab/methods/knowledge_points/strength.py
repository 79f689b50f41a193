"""The strength-calibration policy of the knowledge-point test (paper 002, Sec. 3.4): which strength
scale each layer's projected regional features get before the τ test."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch

from .points import calibrate_strength, strength_scale

log = logging.getLogger(__name__)

STRENGTHS = ("calibrated", "per_layer", "learned")


def strength_scales(
    strength: str,
    layers: Sequence[str],
    reference_layer: str,
    projected: Mapping[str, torch.Tensor],
    importance: Mapping[str, torch.Tensor],
    probs: torch.Tensor,
    log_prior: torch.Tensor,
    directions: torch.Tensor,
    kappa,
) -> tuple[dict[str, float], dict[str, float]]:
    """Strength scale per layer and the KL of each calibrated layer's fit.

    strength: 'calibrated' fits the reference layer's scale with `calibrate_strength` (its regions, as
    an importance-weighted product of experts, reproduce the DNN's P(y|x) best) and gives every layer
    the reference layer's mean strength (the paper's normalisation, `strength_scale`); 'per_layer'
    fits every layer that way (no normalisation); 'learned' normalises to the reference layer's
    strength as the regional projection learned it. projected: {layer: h (N, R, d')}; importance:
    {layer: w (N, R)}; probs: the DNN's softmax (N, C); log_prior, directions, kappa: the sample
    projection's vMF mixture. A layer whose fit is hardly better than the class prior is logged.
    """
    args = (probs, log_prior, directions, kappa)
    calibrated = {"calibrated": [reference_layer], "per_layer": list(layers), "learned": []}[strength]
    fits = {layer: calibrate_strength(projected[layer], importance[layer], *args) for layer in calibrated}
    prior_kl = float((torch.xlogy(probs, probs) - probs * log_prior).sum(1).mean())
    for layer, (_, kl) in fits.items():
        if kl > 0.95 * prior_kl:
            log.warning(
                "%s: its regional features explain the DNN's answers hardly better than the class prior "
                "(KL %.3f vs %.3f), so the calibrated strength is near 0 and few or no regions count as "
                "knowledge points; a larger method.alpha ties them more closely to the sample features",
                layer, kl, prior_kl,
            )  # fmt: skip
    if strength == "per_layer":
        return {layer: s for layer, (s, _) in fits.items()}, {layer: kl for layer, (_, kl) in fits.items()}
    reference = projected[reference_layer] * (fits[reference_layer][0] if fits else 1.0)
    scales = {layer: strength_scale(projected[layer], reference) for layer in layers}
    return scales, {layer: kl for layer, (_, kl) in fits.items()}
