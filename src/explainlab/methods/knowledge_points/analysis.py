"""Paper 002's analysis of one model (Sec. 3.2-3.4, Tables 1-2): sample projection of a sample
feature, regional projections and knowledge points of conv layers, and the correlations of
Tables 1 and 2, from layer outputs that the caller extracted."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from scipy.stats import pearsonr

from explainlab.errors import ConfigValueError

from .baselines import embedding_norms, entropy
from .points import knowledge_points
from .regional import RegionalImportance, RegionalProjection
from .sample_projection import SampleProjection
from .strength import strength_scales

log = logging.getLogger(__name__)


@dataclass
class KnowledgePointResult:
    """What `KnowledgePointAnalysis.analyse` found for one model.

    points: rows of knowledge_points.csv (one per layer); corr: Table 1 rows (method, correlation of
    ‖embedding‖ with the softmax entropy); regional_corr: Table 2 rows (layer, correlation of ‖h‖ with
    w); projection: the fitted SampleProjection; g: (N, d') sample features; labels: (N,); outputs:
    the layer outputs analysed; regional: {layer: RegionalProjection}; scales: {layer: strength scale};
    projected: {layer: h (N, R, d')}; importance: {layer: w (N, R)}.
    """

    points: list[dict[str, Any]]
    corr: list[dict[str, Any]]
    regional_corr: list[dict[str, Any]]
    projection: SampleProjection
    g: torch.Tensor
    labels: torch.Tensor
    outputs: dict[str, torch.Tensor]
    regional: dict[str, RegionalProjection] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    projected: dict[str, torch.Tensor] = field(default_factory=dict)
    importance: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class KnowledgePointAnalysis:
    """Sample projection of `sample_layer` (global-average-pooled when it is a conv map) and regional
    projections + knowledge points of each of `layers` (see `KnowledgePointStudy` for the settings;
    `strength` as in `strength_scales`)."""

    layers: Sequence[str]
    sample_layer: str
    reference_layer: str
    dim: int = 3
    kappa: str = "linear"
    tau: float = 0.4
    strength: str = "calibrated"
    alpha: float = 0.1
    sample_rounds: int = 30
    sample_steps: int = 20
    regional_epochs: int = 10
    regional_lr: float = 0.05
    importance_steps: int = 30
    batch_size: int = 64
    embeddings: Sequence[str] = ()

    def analyse(
        self, outputs: Mapping[str, torch.Tensor], *, name: str, seed: int, device: torch.device | str = "cpu",
        epoch: int = -1,
    ) -> KnowledgePointResult:  # fmt: skip
        """outputs: {layer: raw outputs (N, ...) (conv maps possibly pooled), 'logits': (N, C),
        'labels': (N,)} of `layers` and `sample_layer` on the analysed images (the global RNG is
        seeded with `seed` by the caller)."""
        outs = dict(outputs)
        labels, probs = outs["labels"], outs["logits"].softmax(1)
        sample = outs[self.sample_layer]
        sample = sample.mean((2, 3)) if sample.dim() == 4 else sample.flatten(1)
        projection = SampleProjection(self.dim, kappa=self.kappa, rounds=self.sample_rounds, steps=self.sample_steps,
                                      seed=seed, device=device).fit(sample, probs)  # fmt: skip
        g = projection.transform(sample).cpu()

        corr_rows = [{"method": "ours", "correlation": float(pearsonr(g.norm(dim=1), entropy(probs))[0])}]
        for method in self.embeddings:
            norms = embedding_norms(sample.double().numpy(), method, self.dim, seed)
            corr_rows.append({"method": method, "correlation": float(pearsonr(norms, entropy(probs).numpy())[0])})

        projected, importance, regionals = {}, {}, {}
        for layer in self.layers:
            fmap = outs[layer]
            if fmap.dim() != 4:
                raise ConfigValueError("method.layers", layer, "conv layers with (N, K, H, W) outputs")
            w, _ = RegionalImportance(steps=self.importance_steps, batch_size=self.batch_size).fit_transform(
                fmap.to(device), outs["logits"].to(device)
            )
            regional = RegionalProjection(self.dim, alpha=self.alpha, epochs=self.regional_epochs, lr=self.regional_lr,
                                          batch_size=self.batch_size, seed=seed, device=device)  # fmt: skip
            regional.fit(fmap.to(device), outs["logits"], g, w)
            projected[layer], importance[layer] = regional.transform(fmap.to(device)).cpu(), w.cpu()
            regionals[layer] = regional
            log.info("%s %s: regional loss %.4f -> %.4f", name, layer, regional.history_[0], regional.history_[-1])

        log_prior, directions = projection.log_prior_.cpu(), projection.directions_.cpu()
        scales, calibration_kl = strength_scales(
            self.strength, self.layers, self.reference_layer, projected, importance, probs, log_prior, directions,
            projection.kappa_,
        )  # fmt: skip
        kp_rows, region_rows = [], []
        for layer in self.layers:
            h = projected[layer]
            found = knowledge_points(h, labels, log_prior, directions, projection.kappa_, tau=self.tau,
                                     scale=scales[layer])  # fmt: skip
            cos_to_g = F.cosine_similarity(h, g[:, None, :], dim=2)
            kp_rows.append(
                {
                    "model": name,
                    "epoch": epoch,
                    "layer": layer,
                    "images": len(h),
                    "regions": h.shape[1],
                    "n_points": found.n_points,
                    "n_reliable": found.n_reliable,
                    "ratio": found.ratio,
                    "scale": scales[layer],
                    "strength": float((scales[layer] * h).norm(dim=2).mean()),
                    "calibration_kl": calibration_kl.get(layer, float("nan")),
                    # Σ_r w^r cos(g, h^(r)) averaged over images: how well L_align tied h to g's frame.
                    "alignment": float((importance[layer] * cos_to_g).sum(1).mean()),
                }
            )
            strength = h.norm(dim=2).flatten().numpy()
            region_rows.append(
                {"layer": layer, "correlation": float(pearsonr(strength, importance[layer].flatten().numpy())[0])}
            )
        return KnowledgePointResult(points=kp_rows, corr=corr_rows, regional_corr=region_rows, projection=projection,
                                    g=g, labels=labels, outputs=outs, regional=regionals, scales=scales,
                                    projected=projected, importance=importance)  # fmt: skip
