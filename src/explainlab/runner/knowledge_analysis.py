"""The knowledge-point service both paper-002 studies share (`method=knowledge_points`,
`method=distill`): run `methods.knowledge_points.KnowledgePointAnalysis` on a model (layer outputs
from the one extractor), the Fig. 5 Shapley check, and the tables and figures of one analysis."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from explainlab.methods.knowledge_points import RegionShapley, correlation_table, per_sample_pearson, trace_regions
from explainlab.methods.knowledge_points.analysis import KnowledgePointAnalysis, KnowledgePointResult
from explainlab.results import kp_figures
from explainlab.results.recorder import RunRecorder
from explainlab.runner.activations import extract

Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]
log = logging.getLogger(__name__)


def analyse_model(
    analysis: KnowledgePointAnalysis, model: nn.Module, batches: Batches, *, name: str, seed: int,
    device: torch.device, epoch: int = -1,
) -> KnowledgePointResult:  # fmt: skip
    """Sample projection, regional projections and knowledge points of `model` on `batches` (the
    analysis' layers resolved; maps pooled to at most `analysis.max_side` per side)."""
    torch.manual_seed(seed)
    outs = extract(model, batches, analysis.extracted_layers, device=device, flatten=False, max_side=analysis.max_side)
    return analysis.analyse(outs, name=name, seed=seed, device=device, epoch=epoch)


def shapley_check(
    model: nn.Module, batches: Batches, found: KnowledgePointResult, layers: Sequence[str], *, images: int,
    n_samples: int, max_side: int, seed: int, device: torch.device, progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:  # fmt: skip
    """Fig. 5: Shapley values φ^(r) of the regions of each of `layers` (`RegionShapley`, the same
    region grid as w) for the DNN's logit of its predicted class, on the first `images` images, and
    the per-image Pearson(w^(r), φ^(r)). Returns (`correlation_table` rows, {layer: (w, φ, corr)})."""
    x = torch.cat([b[0] for b in batches])[:images].to(device)
    model = model.eval().to(device)
    target = found.outputs["logits"][:images].argmax(1).to(device)
    per_layer, details = {}, {}
    for layer in layers:
        log.info("Shapley values of the %s regions (%d images, %s permutations each)", layer, len(x), n_samples)
        phi = RegionShapley(model, layer, max_side=max_side, n_samples=n_samples, seed=seed,
                            progress=progress).attribute(x, target)  # fmt: skip
        w = found.importance[layer][:images]
        corr = per_sample_pearson(w.double(), phi.double().cpu())
        per_layer[layer], details[layer] = corr, (w, phi.cpu(), corr)
    return correlation_table(per_layer), details


def save_result(
    rec: RunRecorder, found: KnowledgePointResult, images: torch.Tensor, *, prefix: str = "", figure_images: int = 8,
    class_names: Sequence[str] | None = None,
) -> None:  # fmt: skip
    """The tables and figures of one analysis: regional_corr (Table 2: layer, mean, std, n),
    point_counts (paper's vs calibrated normalisation, saturated), the knowledge points of the
    reference layer drawn on the first `figure_images` images (Figs. 6-right / 7-left) and, when the
    layers share one region grid, that layer's reliable points traced through the layers (Fig. 4).
    images: (N, C, H, W) in [0, 1], the analysed images in order; prefix: put before every name."""
    rec.save_table(f"{prefix}regional_corr", found.regional_corr)
    rec.save_table(f"{prefix}point_counts", found.counts)
    layers = list(found.projected)
    top = layers[-1]
    points = found.found[top]
    rec.save_figure(f"{prefix}knowledge_points_on_images", kp_figures.regions_on_images(
        images, points.points, points.reliable, points.predicted, found.grids[top], found.labels,
        class_names=list(class_names) if class_names else None, max_images=figure_images,
        title=f"knowledge points of {top} (solid: reliable)"))  # fmt: skip
    if len(set(found.grids.values())) == 1:
        scaled = {layer: found.projected[layer] * found.scales[layer] for layer in layers}
        index, traced = trace_regions(points.reliable, scaled)
        rec.save_figure(f"{prefix}traced_regions", kp_figures.traced_regions(
            traced, found.labels[index[:, 0]], found.projection.directions_.cpu()))  # fmt: skip


def headline(found: KnowledgePointResult) -> dict[str, Any]:
    """Summary lines of one analysis, each number beside its reference where the paper gives one."""
    lines: dict[str, Any] = {}
    for row in found.regional_corr.itertuples():
        lines[f"Table 2 corr(‖h‖, w) {row.layer}"] = f"{row.mean:.2f} ± {row.std:.2f} (n={row.n}; paper 0.76-0.82)"
    counts = found.counts.set_index(["normalisation", "layer"])
    for row in found.points:
        layer = row["layer"]
        paper, calibrated = counts.loc[("paper", layer)], counts.loc[("calibrated", layer)]
        flag = lambda r: " SATURATED" if r["saturated"] else ""  # noqa: E731
        lines[f"points {layer}"] = (
            f"{row['n_points']} ({row['ratio']:.2f} reliable, alignment {row['alignment']:.2f}); share of regions "
            f"paper's normalisation {paper['fraction']:.0%}{flag(paper)}, calibrated {calibrated['fraction']:.0%}"
            f"{flag(calibrated)}"
        )
    return lines
