"""`method=knowledge_points`: sample and regional vMF projections of a trained classifier and the
knowledge points of each conv layer (paper 002, Sec. 3.2-3.4, Tables 1-2).

Tables (results/): knowledge_points.csv (model, epoch, layer, images, regions, n_points, n_reliable,
ratio), projection_corr.csv (method, correlation of ‖embedding‖ with the softmax entropy),
regional_corr.csv (layer, correlation of ‖h‖ with w), sample_fit.csv (KL per round).
Figures: sample_projection (3-D scatter with class directions), knowledge_points (bars per layer).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from explainlab.errors import ConfigValueError, check_choice, check_float, check_int
from explainlab.methods.knowledge_points import vmf_log_posterior
from explainlab.methods.knowledge_points.adversarial import trajectory_analysis
from explainlab.methods.knowledge_points.analysis import KnowledgePointAnalysis, KnowledgePointResult
from explainlab.methods.knowledge_points.baselines import EMBEDDINGS
from explainlab.methods.knowledge_points.defaults import default_layers
from explainlab.methods.knowledge_points.strength import STRENGTHS
from explainlab.models.layers import resolve_layers
from explainlab.results import kp_figures
from explainlab.runner.activations import eval_device, extract, first_batches
from explainlab.runner.context import RunContext
from explainlab.runner.training import load_snapshot, log_to_dashboards, train_unless_given


class KnowledgePointStudy:
    """Sample projection of `sample_layer` (global-average-pooled when it is a conv map) and regional
    projections + knowledge points of each of `layers`, on the first `images` images of `split`.

    tau: knowledge-point threshold on max_c p(y=c | s·h^(r)), with the strength scale s per layer from
    `strength`: 'calibrated' (default) fits the reference layer's scale so that its regions, as an
    importance-weighted product of experts, reproduce the DNN's P(y|x) best (`calibrate_strength`),
    then gives every layer the reference layer's mean strength (the paper's normalisation);
    'per_layer' fits every layer's scale that way (no normalisation); 'learned' normalises to the
    reference layer's strength as the regional projection learned it (whose absolute scale is set by
    the arbitrary similarity temperature). reference_layer: the last of `layers` by default.
    max_side: feature maps are average-pooled to at most this many positions per side before the
    regional analysis (its cost grows as (images·H·W)²).
    """

    def __init__(
        self,
        layers: Sequence[str] | None = None,
        sample_layer: str | None = None,
        *,
        split: str = "test",
        images: int = 500,
        dim: int = 3,
        kappa: str = "linear",
        tau: float = 0.4,
        strength: str = "calibrated",
        reference_layer: str | None = None,
        alpha: float = 0.1,
        max_side: int = 8,
        sample_rounds: int = 30,
        sample_steps: int = 20,
        regional_epochs: int = 10,
        regional_lr: float = 0.05,
        importance_steps: int = 30,
        batch_size: int = 64,
        embeddings: Sequence[str] = EMBEDDINGS,
        epochs: Sequence[int] = (),
        adversarial: bool = False,
        progress: bool = True,
    ) -> None:
        check_choice("method.split", split, ("train", "val", "test"))
        check_int("method.images", images, minimum=4)
        check_choice("method.dim", dim, (2, 3, 4))
        check_choice("method.kappa", kappa, ("linear", "fitted"))
        check_float("method.tau", tau, low=0.0, high=1.0)
        check_choice("method.strength", strength, STRENGTHS)
        check_int("method.max_side", max_side, minimum=1)
        for name in embeddings:
            check_choice("method.embeddings", name, EMBEDDINGS)
        if layers is not None and not layers:
            raise ConfigValueError("method.layers", list(layers), "at least one conv layer (or null for the defaults)")
        self.layers = list(layers) if layers is not None else None
        self.sample_layer, self.split, self.images = sample_layer, split, images
        self.dim, self.kappa, self.tau, self.alpha, self.max_side = dim, kappa, tau, alpha, max_side
        self.reference_layer, self.strength = reference_layer, strength
        self.sample_rounds, self.sample_steps = sample_rounds, sample_steps
        self.regional_epochs, self.importance_steps, self.batch_size = regional_epochs, importance_steps, batch_size
        self.regional_lr = regional_lr
        self.embeddings, self.progress = list(embeddings), progress
        for epoch in epochs:
            check_int("method.epochs", epoch, minimum=1)
        self.epochs = sorted({int(e) for e in epochs})
        self.adversarial_study = adversarial

    def resolve_layers(self, cfg: DictConfig) -> None:
        """Fill null layers from the model's defaults and check the reference layer."""
        if self.layers is None or self.sample_layer is None:
            layers, sample_layer = default_layers(cfg.model.name)
            self.layers, self.sample_layer = self.layers or layers, self.sample_layer or sample_layer
        self.reference_layer = self.reference_layer or self.layers[-1]
        if self.reference_layer not in self.layers:
            raise ConfigValueError("method.reference_layer", self.reference_layer, f"one of {self.layers}")

    def first_images(self, ctx: RunContext) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the first `images` images of `split`, in data set order."""
        return first_batches(ctx.datamodule.dataset(self.split), self.images, ctx.datamodule.eval_batch_size)

    def analysis(self) -> KnowledgePointAnalysis:
        """The analysis with this study's settings (layers resolved)."""
        return KnowledgePointAnalysis(
            self.layers, self.sample_layer, self.reference_layer, dim=self.dim, kappa=self.kappa, tau=self.tau,
            strength=self.strength, alpha=self.alpha, sample_rounds=self.sample_rounds,
            sample_steps=self.sample_steps, regional_epochs=self.regional_epochs, regional_lr=self.regional_lr,
            importance_steps=self.importance_steps, batch_size=self.batch_size, embeddings=self.embeddings,
        )  # fmt: skip

    def analyse(
        self, model: torch.nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], *, name: str, seed: int,
        device: torch.device, epoch: int = -1,
    ) -> KnowledgePointResult:  # fmt: skip
        """Sample projection, regional projections and knowledge points of one model on `batches`
        (`methods.knowledge_points.analysis`)."""
        torch.manual_seed(seed)
        layers = list(dict.fromkeys([*self.layers, self.sample_layer]))
        outs = extract(model, batches, layers, device=device, flatten=False, max_side=self.max_side)
        return self.analysis().analyse(outs, name=name, seed=seed, device=device, epoch=epoch)

    def adversarial(
        self, model: torch.nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], found: KnowledgePointResult,
        attack: Any, *, seed: int, device: torch.device, checkpoints: int = 4,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
        """Sec. 4 (Figs. 7-8): the attack is replayed with the same seed for 0 < k_1 < ... < steps steps
        (a prefix of one trajectory); the regional features of every step go to
        `methods.knowledge_points.adversarial.trajectory_analysis`. Returns (per-layer table, utilities)."""
        x = torch.cat([b[0] for b in batches])
        model.eval().to(device)
        with torch.no_grad():
            c_ori = torch.cat([model(b[0].to(device)).argmax(1).cpu() for b in batches])
        grid = sorted({max(1, round(attack.steps * i / checkpoints)) for i in range(1, checkpoints + 1)})
        images = [x]
        for steps in grid:
            torch.manual_seed(seed)
            replay = copy.copy(attack)
            replay.steps = steps
            images.append(replay.perturb(model, x.to(device), c_ori.to(device)).cpu())
        projection = found.projection
        prior, directions = projection.log_prior_.cpu(), projection.directions_.cpu()
        posteriors: dict[str, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        features: dict[str, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        c_adv = c_ori
        for adv in images:
            size = max(len(b[0]) for b in batches)
            chunks = [(adv[i : i + size], c_ori[i : i + size]) for i in range(0, len(adv), size)]
            outs = extract(model, chunks, self.layers, device=device, flatten=False, max_side=self.max_side)
            c_adv = outs["logits"].argmax(1)
            for layer in self.layers:
                h = found.regional[layer].transform(outs[layer].to(device)).cpu() * found.scales[layer]
                features[layer].append(h)
                posteriors[layer].append(vmf_log_posterior(h, prior, directions, projection.kappa_).exp())
        return trajectory_analysis(features, posteriors, c_ori, c_adv, self.tau)

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        start = time.perf_counter()
        ctx = RunContext(cfg)
        self.resolve_layers(cfg)
        external = cfg.model.get("pretrained") or cfg.model.get("checkpoint")
        if self.epochs and external:
            raise ConfigValueError(
                "method.epochs", self.epochs, "[] for a pretrained model (it has no training history)"
            )
        if self.epochs and max(self.epochs) > cfg.recipe.epochs:
            raise ConfigValueError("method.epochs", self.epochs, f"epochs within recipe.epochs={cfg.recipe.epochs}")
        if self.adversarial_study and not cfg.get("attack"):
            raise ConfigValueError("method.adversarial", True, "an attack: add attack=pgd_linf (or set it false)")
        resolve_layers(ctx.model, [*self.layers, self.sample_layer], key="method.layers")
        train_unless_given(ctx, snapshot_epochs=[e for e in self.epochs if e < cfg.recipe.epochs])
        device = eval_device(cfg.trainer.get("accelerator"))
        batches = self.first_images(ctx)
        emergence = []
        for epoch in (e for e in self.epochs if e < cfg.recipe.epochs):  # Fig. 3: the same analysis per epoch
            snapshot = copy.deepcopy(ctx.model)
            snapshot.net.load_state_dict(load_snapshot(ctx, epoch))
            emergence += self.analyse(snapshot, batches, name=cfg.model.name, seed=cfg.seed, device=device,
                                      epoch=epoch).points  # fmt: skip
        final_epoch = cfg.recipe.epochs if not external else -1
        found = self.analyse(ctx.model, batches, name=cfg.model.name, seed=cfg.seed, device=device, epoch=final_epoch)
        kp_rows, corr_rows, region_rows = found.points, found.corr, found.regional_corr
        projection, g, labels = found.projection, found.g, found.labels
        kp_table, corr_table = pd.DataFrame(emergence + kp_rows), pd.DataFrame(corr_rows)
        adversarial = utilities = None
        if self.adversarial_study:
            adversarial, utilities = self.adversarial(ctx.model, batches, found, instantiate(cfg.attack),
                                                      seed=cfg.seed, device=device)  # fmt: skip
        rec = ctx.recorder
        rec.save_config(cfg)
        rec.save_table("knowledge_points", kp_table)
        rec.save_table("projection_corr", corr_table)
        rec.save_table("regional_corr", pd.DataFrame(region_rows))
        rec.save_table("sample_fit", pd.DataFrame({"round": range(1, len(projection.history_) + 1),
                                                   "kl": projection.history_}))  # fmt: skip
        rec.save_figure("sample_projection", kp_figures.sample_scatter(g, labels, projection.directions_.cpu()))
        rec.save_figure("knowledge_points", kp_figures.points_per_layer(pd.DataFrame(kp_rows)))
        if emergence:
            rec.save_figure("emergence", kp_figures.emergence(kp_table))
        if len({found.projected[layer].shape[1] for layer in self.layers}) == 1:  # one region grid for all
            scaled = {layer: found.projected[layer] * found.scales[layer] for layer in self.layers}
            rec.save_figure("through_layers", kp_figures.through_layers(scaled, labels, projection.directions_.cpu()))
        if adversarial is not None:
            rec.save_table("adversarial", adversarial)
            rec.save_table("adversarial_utility", utilities)
            rec.save_figure("adversarial", kp_figures.adversarial(adversarial, utilities, self.tau))
        metrics: dict[str, Any] = {"sample_kl": projection.history_[-1], "seconds": time.perf_counter() - start}
        metrics |= {f"corr/{r['method']}": r["correlation"] for r in corr_rows}
        metrics |= {f"points/{r['layer']}": r["n_points"] for r in kp_rows}
        metrics |= {f"reliable_ratio/{r['layer']}": r["ratio"] for r in kp_rows}
        log_to_dashboards(ctx, {k: float(v) for k, v in metrics.items()})
        rec.log_metrics(metrics)
        headline = {"images": len(labels), "sample projection KL": metrics["sample_kl"],
                    "corr(‖g‖, entropy) ours": corr_rows[0]["correlation"]}  # fmt: skip
        headline |= {f"corr {r['method']}": r["correlation"] for r in corr_rows[1:]}
        headline |= {
            f"points {r['layer']}": f"{r['n_points']} ({r['ratio']:.2f} reliable, alignment {r['alignment']:.2f})"
            for r in kp_rows
        }
        headline["time"] = f"{metrics['seconds']:.1f} s"
        rec.summary(f"explainlab knowledge points: {cfg.model.name}", headline)
        return metrics
