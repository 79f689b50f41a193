"""Quantus (0.6.0) metrics on this project's attribution methods.

Quantus evaluates explanations with ~30 metrics (model-parameter randomisation, random logit,
region perturbation, pixel flipping, sparseness, ...) through an `explain_func(model, inputs,
targets, **kwargs) -> numpy array`. `explain_func(method)` is that function for any of
`attribution.METHODS` (the maps of `to_heatmap`, (N, 1, H, W)), so any Quantus metric runs on them:

    import quantus
    from explainlab.methods.heatmaps.quantus_adapter import evaluate
    scores = evaluate(quantus.MPRT(layer_order="independent", abs=False, normalise=False),
                      model, images, target, "guided_backprop")

Quantus is imported only here, and only when used (importing it takes ~10-20 s; it is an optional
dependency: `pip install explainlab[quantus]`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from explainlab.errors import ExplainlabError, check_choice
from explainlab.methods.heatmaps.attribution import METHODS, explain, prepare, to_heatmap


def _quantus() -> Any:
    try:
        import quantus
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ExplainlabError(
            "Quantus is not installed: pip install 'quantus==0.6.0' (or explainlab[quantus])"
        ) from err
    return quantus


def explain_func(method: str, **options: Any) -> Callable[..., np.ndarray]:
    """A Quantus explain_func for `method`: (model, inputs (N, C, H, W) array, targets (N,) array) ->
    `to_heatmap` maps (N, 1, H, W) float32. options: `attribution.explain`'s keyword arguments
    (ig_steps, occlusion_window, occlusion_stride, baseline, layer). The traced copies a method needs are made per call
    (Quantus hands over a different, randomised model each time)."""
    check_choice("method", method, METHODS)

    def attribute(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **kwargs: Any) -> np.ndarray:
        device = next(model.parameters()).device
        x = torch.as_tensor(np.asarray(inputs), dtype=next(model.parameters()).dtype, device=device)
        target = torch.as_tensor(np.asarray(targets), dtype=torch.long, device=device).view(-1)
        extra = dict(options) | prepare(model, x, [method])
        maps = to_heatmap(explain(model.eval(), x, target, method, **extra), method)
        return maps.unsqueeze(1).float().cpu().numpy()

    return attribute


def evaluate(metric: Any, model: nn.Module, images: torch.Tensor, target: torch.Tensor, method: str,
             **options: Any) -> Any:  # fmt: skip
    """Run a Quantus metric instance on `method`'s maps of `images` (N, C, H, W) for `target` (N,).
    Returns what the metric returns (a list of scores per image, or a dict per layer for MPRT)."""
    _quantus()
    device = "cuda" if images.is_cuda else "cpu"
    return metric(
        model=model.eval(), x_batch=images.detach().cpu().numpy(), y_batch=target.detach().cpu().numpy(),
        a_batch=None, explain_func=explain_func(method, **options), device=device, channel_first=True,
    )  # fmt: skip
