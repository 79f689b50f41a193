"""Paper 002's analysis of one model (Sec. 3.2-3.4, Tables 1-2): sample projection of a sample
feature, regional projections and knowledge points of conv layers, the correlations of Tables 1
and 2 and the knowledge-point counts under the paper's and the calibrated normalisation, from layer
outputs that the caller extracted.

`KnowledgePointAnalysis` holds every option of the analysis and checks them when it is built
(errors name `key_prefix` + the option, e.g. `method.kappa_tilde`), so the studies that run it
(`method=knowledge_points`, `method=distill`) share one definition of the options.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr

from explainlab.errors import ConfigValueError, check_choice, check_float, check_int

from .baselines import EMBEDDINGS, embedding_norms, entropy
from .correlation import correlation_table, strength_importance_correlation
from .defaults import default_layers
from .drpr import DRPR
from .points import KnowledgePoints, calibrate_strength, knowledge_points, normalised_scales, point_counts
from .regional import RegionalImportance, RegionalProjection
from .sample_projection import SampleProjection
from .strength import STRENGTHS, strength_scales

log = logging.getLogger(__name__)

# Table 1's baselines: the scikit-learn embeddings and DRPR (Law et al. 2019, a linear map here).
TABLE1_BASELINES = (*EMBEDDINGS, "drpr")


@dataclass
class KnowledgePointResult:
    """What `KnowledgePointAnalysis.analyse` found for one model.

    points: rows of knowledge_points.csv (one per layer); corr: Table 1 rows (method, correlation of
    ‖embedding‖ with the softmax entropy); regional_corr: Table 2 (`correlation_table`: layer, mean,
    std, n of the per-image Pearson(‖h^(r)‖, w^(r))); counts: `point_counts` under the paper's and the
    calibrated normalisation (with `saturated`); projection: the fitted SampleProjection; g: (N, d')
    sample features; labels: (N,); outputs: the layer outputs analysed; regional: {layer:
    RegionalProjection}; scales: {layer: strength scale}; projected: {layer: h (N, R, d')};
    importance: {layer: w (N, R)}; found: {layer: KnowledgePoints at the study's scale}; grids:
    {layer: (gh, gw) region grid}; strength_corr: {layer: (N,) per-image Table 2 correlations}.
    """

    points: list[dict[str, Any]]
    corr: list[dict[str, Any]]
    regional_corr: pd.DataFrame
    projection: SampleProjection
    g: torch.Tensor
    labels: torch.Tensor
    outputs: dict[str, torch.Tensor]
    counts: pd.DataFrame = field(default_factory=pd.DataFrame)
    regional: dict[str, RegionalProjection] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    projected: dict[str, torch.Tensor] = field(default_factory=dict)
    importance: dict[str, torch.Tensor] = field(default_factory=dict)
    found: dict[str, KnowledgePoints] = field(default_factory=dict)
    grids: dict[str, tuple[int, int]] = field(default_factory=dict)
    strength_corr: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class KnowledgePointAnalysis:
    """Sample projection of `sample_layer` (global-average-pooled when it is a conv map) and regional
    projections + knowledge points of each of `layers`.

    layers / sample_layer: None until `resolved(model_name)` fills the per-architecture defaults;
    reference_layer: the layer whose strength every layer gets (default: the last of `layers`).
    dim: d'; kappa: 'linear' (κ(l) = l) or 'fitted'; tau: the knowledge-point threshold; strength:
    the absolute scale policy (`strength_scales`: calibrated, per_layer, learned); alpha: weight of
    L_align; kappa_tilde: κ̃ of Eq. 12 (paper: 1000); kappa_p: κ_p of P(x2|x1) (10); saturation:
    fraction of regions at or above which a layer's count is flagged `saturated`; max_side: maps are
    average-pooled to at most this many positions per side before the analysis (its cost grows as
    (batch·H·W)²); embeddings: Table 1 baselines (TABLE1_BASELINES). key_prefix: prefix of the keys
    that errors name (e.g. 'method.').
    """

    layers: Sequence[str] | None = None
    sample_layer: str | None = None
    reference_layer: str | None = None
    dim: int = 3
    kappa: str = "linear"
    tau: float = 0.4
    strength: str = "calibrated"
    alpha: float = 0.1
    kappa_tilde: float = 1000.0
    kappa_p: float = 10.0
    saturation: float = 0.7
    max_side: int = 8
    sample_rounds: int = 30
    sample_steps: int = 20
    regional_epochs: int = 10
    regional_lr: float = 0.05
    importance_steps: int = 30
    batch_size: int = 64
    embeddings: Sequence[str] = ()
    key_prefix: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        key = self.key_prefix
        if self.layers is not None and not self.layers:
            raise ConfigValueError(f"{key}layers", list(self.layers), "at least one conv layer (null: the defaults)")
        check_choice(f"{key}dim", self.dim, (2, 3, 4))
        check_choice(f"{key}kappa", self.kappa, ("linear", "fitted"))
        check_float(f"{key}tau", self.tau, low=0.0, high=1.0)
        check_choice(f"{key}strength", self.strength, STRENGTHS)
        check_float(f"{key}alpha", self.alpha, low=0.0, high=float("inf"))
        for name in ("kappa_tilde", "kappa_p", "regional_lr"):
            check_float(f"{key}{name}", getattr(self, name), low=0.0, high=float("inf"), closed=False)
        check_float(f"{key}saturation", self.saturation, low=0.0, high=1.0)
        check_int(f"{key}max_side", self.max_side, minimum=1)
        check_int(f"{key}batch_size", self.batch_size, minimum=2)
        for name in ("sample_rounds", "sample_steps", "regional_epochs", "importance_steps"):
            check_int(f"{key}{name}", getattr(self, name), minimum=1)
        for name in self.embeddings:
            check_choice(f"{key}embeddings", name, TABLE1_BASELINES)
        self.layers = list(self.layers) if self.layers is not None else None
        self.embeddings = list(self.embeddings)

    def resolved(self, model_name: str) -> KnowledgePointAnalysis:
        """A copy with null layers filled from `model_name`'s defaults and the reference layer checked."""
        layers, sample_layer = self.layers, self.sample_layer
        if layers is None or sample_layer is None:
            default, default_sample = default_layers(model_name)
            layers, sample_layer = layers or default, sample_layer or default_sample
        reference = self.reference_layer or layers[-1]
        if reference not in layers:
            raise ConfigValueError(f"{self.key_prefix}reference_layer", reference, f"one of {list(layers)}")
        return dataclasses.replace(self, layers=list(layers), sample_layer=sample_layer, reference_layer=reference)

    @property
    def extracted_layers(self) -> list[str]:
        """The layers whose outputs `analyse` needs (regional layers, then the sample layer)."""
        if self.layers is None or self.sample_layer is None:
            raise ValueError("layers unresolved: call resolved(model_name) first")
        return list(dict.fromkeys([*self.layers, self.sample_layer]))

    def analyse(
        self, outputs: Mapping[str, torch.Tensor], *, name: str, seed: int, device: torch.device | str = "cpu",
        epoch: int = -1,
    ) -> KnowledgePointResult:  # fmt: skip
        """outputs: {layer: raw outputs (N, ...) (conv maps pooled to at most max_side per side),
        'logits': (N, C), 'labels': (N,)} of `layers` and `sample_layer` on the analysed images (the
        global RNG is seeded with `seed` by the caller)."""
        self.extracted_layers  # noqa: B018 (refuses unresolved layers)
        layers, reference = list(self.layers or ()), str(self.reference_layer or self.layers[-1])
        outs = dict(outputs)
        labels, probs = outs["labels"], outs["logits"].softmax(1)
        sample = outs[self.sample_layer]
        sample = sample.mean((2, 3)) if sample.dim() == 4 else sample.flatten(1)
        projection = SampleProjection(self.dim, kappa=self.kappa, rounds=self.sample_rounds, steps=self.sample_steps,
                                      seed=seed, device=device).fit(sample, probs)  # fmt: skip
        g = projection.transform(sample).cpu()
        corr_rows = self._table1(sample, probs, g, seed, device)

        projected, importance, regionals, grids = {}, {}, {}, {}
        for layer in layers:
            fmap = outs[layer]
            if fmap.dim() != 4:
                raise ConfigValueError(f"{self.key_prefix}layers", layer, "conv layers with (N, K, H, W) outputs")
            importance_fit = RegionalImportance(kappa_p=self.kappa_p, kappa_tilde=self.kappa_tilde,
                                                steps=self.importance_steps, batch_size=self.batch_size)  # fmt: skip
            w, _ = importance_fit.fit_transform(fmap.to(device), outs["logits"].to(device))
            regional = RegionalProjection(self.dim, alpha=self.alpha, kappa_p=self.kappa_p, epochs=self.regional_epochs,
                                          lr=self.regional_lr, batch_size=self.batch_size, seed=seed,
                                          device=device)  # fmt: skip
            regional.fit(fmap.to(device), outs["logits"], g, w)
            projected[layer], importance[layer] = regional.transform(fmap.to(device)).cpu(), w.cpu()
            regionals[layer], grids[layer] = regional, (int(fmap.shape[2]), int(fmap.shape[3]))
            log.info("%s %s: regional loss %.4f -> %.4f", name, layer, regional.history_[0], regional.history_[-1])

        log_prior, directions, kappa = projection.log_prior_.cpu(), projection.directions_.cpu(), projection.kappa_
        scales, calibration_kl = strength_scales(self.strength, layers, reference, projected, importance, probs,
                                                 log_prior, directions, kappa)  # fmt: skip
        # The paper's own normalisation (the reference keeps its learned strength) next to the calibrated one.
        s_ref = scales[reference] if self.strength == "calibrated" else calibrate_strength(
            projected[reference], importance[reference], probs, log_prior, directions, kappa)[0]  # fmt: skip
        both = {"paper": normalised_scales(projected, reference),
                "calibrated": normalised_scales(projected, reference, s_ref)}  # fmt: skip
        counts = point_counts(projected, labels, log_prior, directions, kappa, both, tau=self.tau,
                              saturation=self.saturation)  # fmt: skip
        kp_rows, found_by_layer, strength_corr = [], {}, {}
        for layer in layers:
            h = projected[layer]
            found = knowledge_points(h, labels, log_prior, directions, kappa, tau=self.tau, scale=scales[layer])
            found_by_layer[layer] = found
            strength_corr[layer] = strength_importance_correlation(h, importance[layer])
            cos_to_g = F.cosine_similarity(h, g[:, None, :], dim=2)
            fraction = found.n_points / found.points.numel()
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
                    "fraction": fraction,
                    "saturated": fraction >= self.saturation,
                    "scale": scales[layer],
                    "strength": float((scales[layer] * h).norm(dim=2).mean()),
                    "calibration_kl": calibration_kl.get(layer, float("nan")),
                    # Σ_r w^r cos(g, h^(r)) averaged over images: how well L_align tied h to g's frame.
                    "alignment": float((importance[layer] * cos_to_g).sum(1).mean()),
                }
            )
        return KnowledgePointResult(
            points=kp_rows, corr=corr_rows, regional_corr=correlation_table(strength_corr), projection=projection,
            g=g, labels=labels, outputs=outs, counts=counts, regional=regionals, scales=scales, projected=projected,
            importance=importance, found=found_by_layer, grids=grids, strength_corr=strength_corr,
        )  # fmt: skip

    def _table1(
        self, sample: torch.Tensor, probs: torch.Tensor, g: torch.Tensor, seed: int, device: torch.device | str
    ) -> list[dict[str, Any]]:
        """Table 1 rows: Pearson(‖embedding‖, softmax entropy) for ours and each baseline."""
        target = entropy(probs)
        rows = [{"method": "ours", "correlation": float(pearsonr(g.norm(dim=1), target)[0])}]
        for method in self.embeddings:
            if method == "drpr":  # the norm of the centred embedding, like the other baselines'
                embedded = DRPR(self.dim, seed=seed, device=device).fit(sample, probs).transform(sample).cpu()
                norms = (embedded - embedded.mean(0)).norm(dim=1).double().numpy()
            else:
                norms = embedding_norms(sample.double().numpy(), method, self.dim, seed)
            rows.append({"method": method, "correlation": float(pearsonr(norms, target.numpy())[0])})
        return rows
