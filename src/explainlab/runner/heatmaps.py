"""`method=heatmaps`: heat maps of several models and methods on the same images (paper 003).

Wiring only: config -> models and images -> `methods.heatmaps` (maps, SSIM, clustering, AOPC,
insertion/deletion, sparsity, sanity checks) -> recorder. Tables (results/): ssim/<method>/<image>.csv,
clusters.csv, merge_statistics.csv, aopc.csv, insertion_deletion.csv + insertion_deletion_auc.csv,
sparsity.csv, randomisation.csv, predictions.csv, skipped.csv (docs/heatmaps.md lists their columns).
Figures: heatmaps_<image>, ssim_<method>, dendrogram_<method>[_<image>], aopc, insertion_deletion,
sparsity, randomisation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig
from torch import nn
from tqdm.auto import tqdm

from explainlab.errors import ConfigValueError, ExplainlabError
from explainlab.methods.heatmaps import cluster, evaluation, merge_statistics, sparsity_table
from explainlab.methods.heatmaps.attribution import explain, prepare, to_heatmap, to_magnitude
from explainlab.methods.heatmaps.sanity import data_randomisation, model_randomisation, permuted_labels
from explainlab.models.factories import build_trained
from explainlab.results import heatmap_figures
from explainlab.runner.activations import eval_device
from explainlab.runner.context import RunContext
from explainlab.runner.heatmap_options import SOURCES, HeatmapOptions
from explainlab.runner.training import ensure_trained, log_to_dashboards, train_unless_given

log = logging.getLogger(__name__)

__all__ = ["SOURCES", "HeatmapStudy"]


class HeatmapStudy(HeatmapOptions):
    """Heat maps of `models` x `methods` on the same images; the options and their checks are in
    `HeatmapOptions` (runner/heatmap_options.py), each documented in docs/heatmaps.md."""

    def _model(self, ctx: RunContext, entry: Mapping[str, Any]) -> nn.Module:
        if entry["trained"] == "run":
            if entry["name"] != ctx.cfg.model.name:
                raise ConfigValueError("method.models[].name", entry["name"], f"the run's model {ctx.cfg.model.name!r}")
            train_unless_given(ctx, record=False)
            return ctx.model
        return build_trained(entry["name"], entry["trained"], ctx.cfg.paths)

    def _models(self, ctx: RunContext) -> tuple[dict[str, nn.Module], list[dict[str, str]]]:
        """Every loadable model of `models` (eval mode, on the CPU) and the skipped ones with the reason."""
        models, skipped = {}, []
        for entry in self.models:
            try:
                models[entry["name"]] = self._model(ctx, entry).eval()
            except ExplainlabError as err:
                log.warning("skipping %s: %s", entry["name"], err)
                skipped.append({"model": entry["name"], "reason": str(err)})
        if not models:
            reasons = "\n".join(f"  {s['model']}: {s['reason']}" for s in skipped)
            raise ExplainlabError(f"no model of method.models could be loaded:\n{reasons}")
        return models, skipped

    def _attributions(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """method -> attributions (N, C, H, W) of every method of the study."""
        window = min(self.occlusion_window, x.shape[-1])
        options = {**prepare(model, x, self.methods), "ig_steps": self.ig_steps, "occlusion_window": window,
                   "occlusion_stride": window}  # fmt: skip
        return {m: explain(model, x, target, m, **options) for m in self.methods}

    def _maps(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """method -> heat maps (N, H, W) in [0, 1] (`to_heatmap`), on the CPU."""
        return _per_method(to_heatmap, self._attributions(model, x, target))

    def _compare_options(self) -> dict[str, Any]:
        """`sanity.compare_maps`' options from the study's ssim and hog_cell."""
        return {"ssim_sigma": self.ssim["sigma"], "ssim_window": self.ssim["window"],
                "ssim_gaussian": self.ssim["gaussian"], "hog_cell": self.hog_cell}  # fmt: skip

    def _randomisation(self, name: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                       maps: dict[str, torch.Tensor], seed: int) -> pd.DataFrame:  # fmt: skip
        parts = [model_randomisation(model, x, target, self._maps, order=order, max_layers=self.randomisation_layers,
                                     measures=self.randomisation_measures, seed=seed, reference=maps,
                                     **self._compare_options())
                 for order in self.randomisation_orders]  # fmt: skip
        table = pd.concat(parts, ignore_index=True)
        table.insert(0, "model", name)
        return table

    def _data_randomisation(self, ctx: RunContext, name: str, model: nn.Module, x: torch.Tensor,
                            target: torch.Tensor, maps: dict[str, torch.Tensor]) -> pd.DataFrame:  # fmt: skip
        """Adebayo et al.'s data randomisation: the run's model against the same architecture trained by
        the same recipe on permuted training labels (cached under its own spec; its training logs go to
        random_labels/)."""
        other = RunContext(ctx.cfg, output_dir=ctx.output_dir / "random_labels")
        train = other.datamodule.dataset("train")
        train.labels = permuted_labels(train.labels, ctx.cfg.seed)
        ensure_trained(other, spec=other.training_spec() | {"labels": "permuted", "label_seed": ctx.cfg.seed})
        table = data_randomisation(model, other.model.eval().to(x.device), x, target, self._maps, reference=maps,
                                   measures=self.randomisation_measures, **self._compare_options())  # fmt: skip
        table.insert(0, "model", name)
        return table

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        start = time.perf_counter()
        ctx = RunContext(cfg)
        device = eval_device(cfg.trainer.get("accelerator"))
        side = self.image_size or (224 if self.image_paths or self.image_folder else cfg.dataset.get("image_size"))
        if side:  # refused before any model is trained or loaded
            self.check_image_size((side, side))
        models, skipped = self._models(ctx)
        x, labels, sources = self._images(ctx, models, device)
        self.check_image_size(x.shape[-2:])
        x = x.to(device)
        names, maps, magnitudes, predictions = list(models), {}, {}, []
        tables: dict[str, list[pd.DataFrame]] = {"aopc": [], "insertion_deletion": [], "insertion_deletion_auc": [],
                                                 "randomisation": [], "data_randomisation": []}  # fmt: skip
        bar = tqdm(models.items(), desc="heat maps", total=len(models), unit="model", disable=not self.progress)
        for k, (name, model) in enumerate(bar):
            model, stage_start = model.to(device), time.perf_counter()
            bar.set_postfix_str(f"{name}: {len(self.methods)} methods")
            with torch.no_grad():
                predicted = model(x).argmax(1)
            target = predicted if self.target == "predicted" else torch.full_like(predicted, int(self.target))
            attributions = self._attributions(model, x, target)
            maps[name] = _per_method(to_heatmap, attributions)
            if self.sparsity:
                magnitudes[name] = _per_method(to_magnitude, attributions)
            del attributions
            log.info("%s: maps of %d methods x %d images in %.1f s", name, len(self.methods), len(x),
                     time.perf_counter() - stage_start)  # fmt: skip
            bar.set_postfix_str(f"{name}: perturbation curves")
            predictions += [{"model": name, "image": i, "source": sources[i], "label": int(labels[i]),
                             "predicted": int(predicted[i])} for i in range(len(x))]  # fmt: skip
            tables["aopc"].append(evaluation.aopc_table(
                model, x, maps[name], target, orders=self.aopc_orders, steps=self.aopc_steps, patch=self.patch,
                fill=self.aopc_fill, regions=self.aopc_regions, seed=cfg.seed).assign(model=name))  # fmt: skip
            if self.insertion_deletion:
                curves, areas = evaluation.insertion_deletion_tables(model, x, maps[name], target,
                                                                     steps=self.insertion_deletion_steps, seed=cfg.seed)
                tables["insertion_deletion"].append(curves.assign(model=name))
                tables["insertion_deletion_auc"].append(areas.assign(model=name))
            if self.randomisation == "all" or (self.randomisation == "first" and k == 0):
                bar.set_postfix_str(f"{name}: randomisation")
                tables["randomisation"].append(self._randomisation(name, model, x, target, maps[name], cfg.seed))
            if self.data_randomisation and self.models[k]["trained"] == "run":
                tables["data_randomisation"].append(self._data_randomisation(ctx, name, model, x, target, maps[name]))
            models[name] = model.cpu()
            log.info("%s done in %.1f s", name, time.perf_counter() - stage_start)
        rec = ctx.recorder
        rec.save_config(cfg)
        similarity = evaluation.similarity_matrices(maps, self.methods, sigma=self.ssim["sigma"],
                                                    kernel_size=self.ssim["window"], gaussian=self.ssim["gaussian"])
        for method, matrices in similarity.items():
            for i, matrix in enumerate(matrices):
                rec.save_table(f"ssim/{method}/{i}", evaluation.ssim_table(matrix, names))
        if len(names) > 2:
            clusters = evaluation.clusters(similarity, maps, self.linkages)
            rec.save_table("clusters", clusters)
            rec.save_table("merge_statistics", merge_statistics(clusters))
        aopc = _first_columns(pd.concat(tables.pop("aopc"), ignore_index=True), "model")
        rec.save_table("aopc", aopc)
        for key, parts in tables.items():
            if parts:
                rec.save_table(key, _first_columns(pd.concat(parts, ignore_index=True), "model"))
        if self.sparsity:
            sparsity = sparsity_table(magnitudes)  # of |attribution|: a signed map's zero is no highlight
            rec.save_table("sparsity", sparsity)
            rec.save_figure("sparsity", heatmap_figures.sparsity(sparsity))
        rec.save_table("predictions", pd.DataFrame(predictions))
        rec.save_table("skipped", pd.DataFrame(skipped, columns=["model", "reason"]))
        self._figures(rec, x, names, maps, similarity, aopc, tables)
        return self._summarise(ctx, names, aopc, skipped, len(x), time.perf_counter() - start)

    def _figures(self, rec: Any, x: torch.Tensor, names: list[str], maps: dict, similarity: dict,
                 aopc: pd.DataFrame, tables: dict[str, list[pd.DataFrame]]) -> None:  # fmt: skip
        for i in range(min(len(x), 4)):
            per_model = {n: {m: maps[n][m][i] for m in self.methods} for n in names}
            rec.save_figure(f"heatmaps_{i}", heatmap_figures.grid(x[i].cpu(), per_model))
        linkage = next((name for name in self.linkages if name != "ward_maps"), None)
        for method, matrices in similarity.items() if len(names) > 1 else ():
            rec.save_figure(f"ssim_{method}", heatmap_figures.ssim(matrices.mean(0), names, method))
            if len(names) > 2 and linkage:
                cases = [("", matrices.mean(0))]
                cases += [(f"_{i}", m) for i, m in enumerate(matrices)] if self.dendrograms == "per_image" else []
                for suffix, matrix in cases:
                    tree, cophenetic = cluster(linkage, matrix)
                    title = f"{method}, {'mean' if not suffix else 'image ' + suffix[1:]}, {linkage}"
                    rec.save_figure(f"dendrogram_{method}{suffix}",
                                    heatmap_figures.draw_dendrogram(tree, names, title, cophenetic=cophenetic))
        rec.save_figure("aopc", heatmap_figures.aopc(aopc))
        if tables["insertion_deletion"]:
            rec.save_figure("insertion_deletion",
                            heatmap_figures.insertion_deletion(pd.concat(tables["insertion_deletion"])))
        if tables["randomisation"]:
            rec.save_figure("randomisation",
                            heatmap_figures.randomisation_measures(pd.concat(tables["randomisation"])))

    def _summarise(self, ctx: RunContext, names: list[str], aopc: pd.DataFrame, skipped: list[dict],
                   images: int, seconds: float) -> dict[str, Any]:  # fmt: skip
        final = evaluation.final_aopc(aopc)
        metrics: dict[str, Any] = {"seconds": seconds, "models": len(names)}
        metrics |= {f"aopc/{r.model}/{r.method}": r.score for r in final[final["order"] == "morf"].itertuples()}
        metrics |= {f"aopc_{r.order}/{r.model}/{r.method}": r.score
                    for r in final[final["order"] != "morf"].itertuples()}  # fmt: skip
        log_to_dashboards(ctx, {k: float(v) for k, v in metrics.items()})
        ctx.recorder.log_metrics(metrics | {"skipped": skipped})
        headline: dict[str, Any] = {"models": ", ".join(names), "methods": ", ".join(self.methods), "images": images}
        # AOPC is read against the random order's (the same perturbation, patches in random order).
        best = final[final["order"] == "morf"].sort_values("score", ascending=False).head(3)
        for r in best.itertuples():
            reference = f"random order {r.random:.4f}" if pd.notna(r.random) else "no random order in aopc_orders"
            headline[f"AOPC {r.model} {r.method}"] = f"{r.score:.4f} ({reference})"
        if skipped:
            headline["skipped"] = ", ".join(s["model"] for s in skipped)
        headline["time"] = f"{seconds:.1f} s"
        ctx.recorder.summary(f"explainlab heatmaps: {len(names)} models x {len(self.methods)} methods", headline)
        return metrics


def _per_method(reduce: Any, attributions: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """method -> reduce(attributions, method) on the CPU (`to_heatmap` or `to_magnitude`)."""
    return {m: reduce(a, m).cpu() for m, a in attributions.items()}


def _first_columns(table: pd.DataFrame, *first: str) -> pd.DataFrame:
    return table[[*first, *(c for c in table.columns if c not in first)]]

