"""`method=knowledge_points`: sample and regional vMF projections of a trained classifier and the
knowledge points of each conv layer (paper 002, Sec. 3.2-3.4, Tables 1-2, Figs. 3-7).

Tables (results/): knowledge_points.csv (model, epoch, layer, images, regions, n_points, n_reliable,
ratio, fraction, saturated, ...), point_counts.csv (the counts under the paper's and the calibrated
normalisation, with saturated and lift), projection_corr.csv (Table 1: method, correlation of
‖embedding‖ with the softmax entropy; DRPR among the baselines), regional_corr.csv (Table 2: layer,
mean, std, n of the per-image corr(‖h‖, w)), shapley_corr.csv (Fig. 5, with method.shapley_images),
sample_fit.csv (KL per round). Figures: sample_projection, knowledge_points (bars per layer),
knowledge_points_on_images, traced_regions, through_layers, shapley_vs_importance_<layer>, emergence,
adversarial.
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

from explainlab.errors import ConfigValueError, check_choice, check_int
from explainlab.methods.knowledge_points import vmf_log_posterior
from explainlab.methods.knowledge_points.adversarial import trajectory_analysis
from explainlab.methods.knowledge_points.analysis import KnowledgePointAnalysis, KnowledgePointResult
from explainlab.methods.knowledge_points.baselines import EMBEDDINGS
from explainlab.models.layers import resolve_layers
from explainlab.results import kp_figures
from explainlab.runner.activations import eval_device, extract, first_batches
from explainlab.runner.context import RunContext
from explainlab.runner.knowledge_analysis import analyse_model, headline, save_result, shapley_check
from explainlab.runner.training import load_snapshot, log_to_dashboards, train_unless_given


class KnowledgePointStudy:
    """Paper 002 on one trained model: `methods.knowledge_points.KnowledgePointAnalysis` (its options
    are this study's keys and are checked when the study is built) on the first `images` images of
    `split`, plus the Fig. 5 Shapley check, the Fig. 3 emergence over kept epochs and the Sec. 4
    adversarial trajectories.

    shapley_images: images of the Shapley check (0 skips it; its cost is R · shapley_samples forward
    passes of the network per image and layer); shapley_samples: random permutations per image;
    shapley_layers: layers checked (null: every regional layer). figure_images: images the knowledge
    points are drawn on. Other keys: `KnowledgePointAnalysis` (reference_layer defaults to the last
    of `layers`).
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
        kappa_tilde: float = 1000.0,
        kappa_p: float = 10.0,
        saturation: float = 0.7,
        max_side: int = 8,
        sample_rounds: int = 30,
        sample_steps: int = 20,
        regional_epochs: int = 10,
        regional_lr: float = 0.05,
        importance_steps: int = 30,
        batch_size: int = 64,
        embeddings: Sequence[str] = (*EMBEDDINGS, "drpr"),
        shapley_images: int = 0,
        shapley_samples: int = 25,
        shapley_layers: Sequence[str] | None = None,
        figure_images: int = 8,
        epochs: Sequence[int] = (),
        adversarial: bool = False,
        progress: bool = True,
    ) -> None:
        check_choice("method.split", split, ("train", "val", "test"))
        check_int("method.images", images, minimum=4)
        check_int("method.shapley_images", shapley_images, minimum=0)
        check_int("method.shapley_samples", shapley_samples, minimum=1)
        check_int("method.figure_images", figure_images, minimum=1)
        self.analysis = KnowledgePointAnalysis(
            layers, sample_layer, reference_layer, dim=dim, kappa=kappa, tau=tau, strength=strength, alpha=alpha,
            kappa_tilde=kappa_tilde, kappa_p=kappa_p, saturation=saturation, max_side=max_side,
            sample_rounds=sample_rounds, sample_steps=sample_steps, regional_epochs=regional_epochs,
            regional_lr=regional_lr, importance_steps=importance_steps, batch_size=batch_size, embeddings=embeddings,
            key_prefix="method.",
        )  # fmt: skip
        if shapley_layers is not None and layers is not None:
            for layer in shapley_layers:
                check_choice("method.shapley_layers", layer, list(layers))
        self.split, self.images, self.progress, self.figure_images = split, images, progress, figure_images
        self.shapley_images, self.shapley_samples = shapley_images, shapley_samples
        self.shapley_layers = list(shapley_layers) if shapley_layers is not None else None
        for epoch in epochs:
            check_int("method.epochs", epoch, minimum=1)
        self.epochs = sorted({int(e) for e in epochs})
        self.adversarial_study = adversarial

    @property
    def layers(self) -> list[str]:
        return list(self.analysis.layers or ())

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
            outs = extract(model, chunks, self.layers, device=device, flatten=False, max_side=self.analysis.max_side)
            c_adv = outs["logits"].argmax(1)
            for layer in self.layers:
                h = found.regional[layer].transform(outs[layer].to(device)).cpu() * found.scales[layer]
                features[layer].append(h)
                posteriors[layer].append(vmf_log_posterior(h, prior, directions, projection.kappa_).exp())
        return trajectory_analysis(features, posteriors, c_ori, c_adv, self.analysis.tau)

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        start = time.perf_counter()
        ctx = RunContext(cfg)
        analysis = self.analysis = self.analysis.resolved(cfg.model.name)
        shapley_layers = self.shapley_layers if self.shapley_layers is not None else self.layers
        for layer in shapley_layers:
            check_choice("method.shapley_layers", layer, self.layers)
        external = cfg.model.get("pretrained") or cfg.model.get("checkpoint")
        if self.epochs and external:
            raise ConfigValueError(
                "method.epochs", self.epochs, "[] for a pretrained model (it has no training history)"
            )
        if self.epochs and max(self.epochs) > cfg.recipe.epochs:
            raise ConfigValueError("method.epochs", self.epochs, f"epochs within recipe.epochs={cfg.recipe.epochs}")
        if self.adversarial_study and not cfg.get("attack"):
            raise ConfigValueError("method.adversarial", True, "an attack: add attack=pgd_linf (or set it false)")
        resolve_layers(ctx.model, analysis.extracted_layers, key="method.layers")
        train_unless_given(ctx, snapshot_epochs=[e for e in self.epochs if e < cfg.recipe.epochs])
        device = eval_device(cfg.trainer.get("accelerator"))
        batches = first_batches(ctx.datamodule.dataset(self.split), self.images, ctx.datamodule.eval_batch_size)
        emergence = []
        for epoch in (e for e in self.epochs if e < cfg.recipe.epochs):  # Fig. 3: the same analysis per epoch
            snapshot = copy.deepcopy(ctx.model)
            snapshot.net.load_state_dict(load_snapshot(ctx, epoch))
            emergence += analyse_model(analysis, snapshot, batches, name=cfg.model.name, seed=cfg.seed, device=device,
                                       epoch=epoch).points  # fmt: skip
        final_epoch = cfg.recipe.epochs if not external else -1
        found = analyse_model(analysis, ctx.model, batches, name=cfg.model.name, seed=cfg.seed, device=device,
                              epoch=final_epoch)  # fmt: skip
        kp_rows, corr_rows, projection = found.points, found.corr, found.projection
        kp_table, corr_table = pd.DataFrame(emergence + kp_rows), pd.DataFrame(corr_rows)
        adversarial = utilities = shapley = None
        if self.adversarial_study:
            adversarial, utilities = self.adversarial(ctx.model, batches, found, instantiate(cfg.attack),
                                                      seed=cfg.seed, device=device)  # fmt: skip
        if self.shapley_images:
            shapley, details = shapley_check(ctx.model, batches, found, shapley_layers, images=self.shapley_images,
                                             n_samples=self.shapley_samples, max_side=analysis.max_side,
                                             seed=cfg.seed, device=device, progress=self.progress)  # fmt: skip
        rec = ctx.recorder
        rec.save_config(cfg)
        rec.save_table("knowledge_points", kp_table)
        rec.save_table("projection_corr", corr_table)
        rec.save_table("sample_fit", pd.DataFrame({"round": range(1, len(projection.history_) + 1),
                                                   "kl": projection.history_}))  # fmt: skip
        images = torch.cat([b[0] for b in batches])
        save_result(rec, found, images, figure_images=self.figure_images,
                    class_names=getattr(ctx.datamodule, "classes", None))  # fmt: skip
        directions = projection.directions_.cpu()
        rec.save_figure("sample_projection", kp_figures.sample_scatter(found.g, found.labels, directions))
        rec.save_figure("knowledge_points", kp_figures.points_per_layer(pd.DataFrame(kp_rows)))
        if emergence:
            rec.save_figure("emergence", kp_figures.emergence(kp_table))
        if len(set(found.grids.values())) == 1:  # one region grid for all
            scaled = {layer: found.projected[layer] * found.scales[layer] for layer in self.layers}
            rec.save_figure("through_layers", kp_figures.through_layers(scaled, found.labels,
                                                                        projection.directions_.cpu()))  # fmt: skip
        if shapley is not None:
            rec.save_table("shapley_corr", shapley)
            for layer, (w, phi, corr) in details.items():
                rec.save_figure(f"shapley_vs_importance_{layer}",
                                kp_figures.shapley_vs_importance(w, phi, found.grids[layer], corr))  # fmt: skip
        if adversarial is not None:
            rec.save_table("adversarial", adversarial)
            rec.save_table("adversarial_utility", utilities)
            rec.save_figure("adversarial", kp_figures.adversarial(adversarial, utilities, analysis.tau))
        metrics: dict[str, Any] = {"sample_kl": projection.history_[-1], "seconds": time.perf_counter() - start}
        metrics |= {f"corr/{r['method']}": r["correlation"] for r in corr_rows}
        metrics |= {f"points/{r['layer']}": r["n_points"] for r in kp_rows}
        metrics |= {f"reliable_ratio/{r['layer']}": r["ratio"] for r in kp_rows}
        metrics |= {f"strength_importance_corr/{r.layer}": r.mean for r in found.regional_corr.itertuples()}
        if shapley is not None:
            metrics |= {f"shapley_corr/{r.layer}": r.mean for r in shapley.itertuples()}
        log_to_dashboards(ctx, {k: float(v) for k, v in metrics.items()})
        rec.log_metrics(metrics)
        lines = {"images": len(found.labels), "sample projection KL": metrics["sample_kl"],
                 "corr(‖g‖, entropy) ours (paper −0.84…−0.95)": corr_rows[0]["correlation"]}  # fmt: skip
        lines |= {f"corr {r['method']}": r["correlation"] for r in corr_rows[1:]}
        lines |= headline(found)
        if shapley is not None:
            lines |= {f"Fig. 5 corr(w, φ) {r.layer}": f"{r.mean:.2f} ± {r.std:.2f} (n={r.n})"
                      for r in shapley.itertuples()}  # fmt: skip
        lines["time"] = f"{metrics['seconds']:.1f} s"
        rec.summary(f"explainlab knowledge points: {cfg.model.name}", lines)
        return metrics
