"""`method=heatmaps`: heat maps of several models and methods on the same images (paper 003).

For each model (its own predicted class as target, or a fixed class): every method's maps; per image
and method the SSIM matrix across models and two clusterings; the AOPC perturbation test (most
relevant first, the random-order baseline, optionally least relevant first); optionally the
model-parameter randomisation sanity check (Adebayo et al.): SSIM between the trained model's maps
and those of copies whose parameterised layers are re-initialised from the top, one at a time.

Tables (results/): ssim/<method>/<image>.csv (model_a, model_b, ssim), clusters.csv, aopc.csv
(model, method, order, step, score), randomisation.csv, predictions.csv (model, image, source: the
dataset index or file, label, predicted), skipped.csv.
Figures: heatmaps_<image>, ssim_<method>, dendrogram_<method>, aopc, randomisation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from scipy.cluster.hierarchy import fcluster
from torch import nn

from explainlab.data.image_files import load_image_files, resize_images
from explainlab.errors import ConfigValueError, ExplainlabError, check_choice, check_int
from explainlab.methods.heatmaps import cluster_heatmaps, cluster_ssim, perturbation_curve, ssim_matrix
from explainlab.methods.heatmaps.attribution import METHODS, explain, prepare, to_heatmap
from explainlab.methods.heatmaps.sanity import randomised_models
from explainlab.models.build import MODEL_NAMES
from explainlab.models.factories import build_trained
from explainlab.results import heatmap_figures
from explainlab.runner.activations import eval_device
from explainlab.runner.context import RunContext
from explainlab.runner.training import log_to_dashboards, train_unless_given

log = logging.getLogger(__name__)

SOURCES = ("run", "akamaster", "torchvision")
AOPC_ORDERS = ("morf", "lerf", "random")


class HeatmapStudy:
    """Heat maps of `models` x `methods` on the same images.

    models: [{name, trained}] with trained in SOURCES ('run': the run's model, trained by its recipe
    or from the cache; 'akamaster': published CIFAR ResNets; 'torchvision': weights=DEFAULT, skipped
    offline with the file to fetch). Every model must accept the images.
    images: how many of `split`'s first images, or a list of dataset indices. image_paths: image
    files instead (labels then unknown, -1). image_size: resize every image to this side (files:
    shorter side + centre crop; dataset images: bilinear), e.g. 224 for ImageNet models.
    target: 'predicted' (each model's own answer) or a class index. aopc_steps / patch: perturbation
    test; aopc_orders: any of AOPC_ORDERS ('morf' most relevant first, 'lerf' least relevant first,
    'random' the baseline). randomisation: run the sanity check on the first model (at most
    `randomisation_layers`).
    """

    def __init__(self, models: Sequence[Mapping[str, Any]], methods: Sequence[str] = METHODS, *,
                 images: int | Sequence[int] = 8, image_paths: Sequence[str] | None = None,
                 image_size: int | None = None, split: str = "test", target: str | int = "predicted",
                 aopc_steps: int = 16, patch: int = 4, aopc_fill: str = "uniform",
                 aopc_orders: Sequence[str] = ("morf", "random"), randomisation: bool = True,
                 randomisation_layers: int = 6, occlusion_window: int = 8, ig_steps: int = 32,
                 progress: bool = True, num_classes: int | None = None) -> None:  # fmt: skip
        self.models = [dict(OmegaConf.to_container(m) if isinstance(m, DictConfig) else m) for m in models]
        if not self.models:
            raise ConfigValueError("method.models", [], "at least one {name, trained} entry")
        for i, entry in enumerate(self.models):
            check_choice(f"method.models[{i}].trained", entry.get("trained"), SOURCES)
            check_choice(f"method.models[{i}].name", entry.get("name"), MODEL_NAMES)
        for method in methods:
            check_choice("method.methods", method, METHODS)
        if isinstance(images, int):
            check_int("method.images", images, minimum=1)
        else:
            images = list(images)
            for index in images:
                check_int("method.images[]", index, minimum=0)
            if not images and not image_paths:
                raise ConfigValueError("method.images", images, "a count >= 1 or a non-empty list of dataset indices")
        check_int("method.image_size", image_size, minimum=8, optional=True)
        for order in aopc_orders:
            check_choice("method.aopc_orders", order, AOPC_ORDERS)
        check_choice("method.split", split, ("train", "val", "test"))
        check_choice("method.aopc_fill", aopc_fill, ("uniform", "mean"))
        for key, value in {"occlusion_window": occlusion_window, "patch": patch, "aopc_steps": aopc_steps,
                           "ig_steps": ig_steps}.items():  # fmt: skip
            check_int(f"method.{key}", value, minimum=1)
        index = not isinstance(target, bool) and isinstance(target, int) and 0 <= target < (num_classes or 1 << 62)
        if target != "predicted" and not index:
            raise ConfigValueError("method.target", target, f"'predicted' or a class index in [0, {num_classes})")
        self.methods, self.images, self.split, self.target = list(methods), images, split, target
        self.image_paths = list(image_paths) if image_paths else None
        self.image_size = image_size
        self.aopc_steps, self.patch, self.aopc_fill, self.aopc_orders = aopc_steps, patch, aopc_fill, list(aopc_orders)
        self.randomisation, self.randomisation_layers = randomisation, randomisation_layers
        self.occlusion_window, self.ig_steps, self.progress = occlusion_window, ig_steps, progress

    def _model(self, ctx: RunContext, entry: Mapping[str, Any]) -> nn.Module:
        if entry["trained"] == "run":
            if entry["name"] != ctx.cfg.model.name:
                raise ConfigValueError("method.models[].name", entry["name"], f"the run's model {ctx.cfg.model.name!r}")
            train_unless_given(ctx, record=False)
            return ctx.model
        return build_trained(entry["name"], entry["trained"], ctx.cfg.paths)

    def _images(self, ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Images (N, C, H, W) in [0, 1], their labels (-1 for image files) and sources (file or
        `split[index]`). A count of images is clipped to the split; explicit indices must lie in it."""
        if self.image_paths:
            x = load_image_files(self.image_paths, self.image_size or 224, key="method.image_paths")
            return x, torch.full((len(x),), -1), [str(path) for path in self.image_paths]
        dataset = ctx.datamodule.dataset(self.split)
        if isinstance(self.images, int):
            indices = list(range(min(self.images, len(dataset))))
        else:
            indices = self.images
        outside = [i for i in indices if i >= len(dataset)]
        if outside:
            raise ConfigValueError("method.images", outside, f"indices below {len(dataset)} (the {self.split} split)")
        x, labels = dataset.__getitems__(indices)
        x = resize_images(x, self.image_size) if self.image_size else x
        return x, labels, [f"{self.split}[{i}]" for i in indices]

    def _maps(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        window = min(self.occlusion_window, x.shape[-1])
        options = {**prepare(model, x, self.methods), "ig_steps": self.ig_steps, "occlusion_window": window,
                   "occlusion_stride": window}  # fmt: skip
        return {m: to_heatmap(explain(model, x, target, m, **options), m).cpu() for m in self.methods}

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        start = time.perf_counter()
        ctx = RunContext(cfg)
        device = eval_device(cfg.trainer.get("accelerator"))
        x, labels, sources = self._images(ctx)
        x = x.to(device)
        names, maps, skipped, predictions, aopc_rows = [], {}, [], [], []
        for entry in self.models:
            try:
                model = self._model(ctx, entry).eval().to(device)
            except ExplainlabError as err:
                log.warning("skipping %s: %s", entry["name"], err)
                skipped.append({"model": entry["name"], "reason": str(err)})
                continue
            with torch.no_grad():
                predicted = model(x).argmax(1)
            target = predicted if self.target == "predicted" else torch.full_like(predicted, int(self.target))
            name = entry["name"]
            names.append(name)
            maps[name] = self._maps(model, x, target)
            predictions += [{"model": name, "image": i, "source": sources[i], "label": int(labels[i]),
                             "predicted": int(predicted[i])} for i in range(len(x))]  # fmt: skip
            for method, m in maps[name].items():
                for order in self.aopc_orders:
                    _, curve = perturbation_curve(
                        model, x, m.to(device), target, steps=self.aopc_steps, patch=self.patch, order=order,
                        fill=self.aopc_fill, seed=cfg.seed,
                    )  # fmt: skip
                    aopc_rows += [{"model": name, "method": method, "order": order, "step": k, "score": float(v)}
                                  for k, v in enumerate(curve.cpu())]  # fmt: skip
            if self.randomisation and len(names) == 1:
                randomised = self._randomisation(model, x, target, maps[name], cfg.seed)
        if not names:
            reasons = "\n".join(f"  {s['model']}: {s['reason']}" for s in skipped)
            raise ExplainlabError(f"no model of method.models could be loaded:\n{reasons}")
        rec = ctx.recorder
        rec.save_config(cfg)
        cluster_rows, mean_ssim = [], {}
        for method in self.methods:
            per_image = []
            for i in range(len(x)):
                stack = torch.stack([maps[n][method][i] for n in names])
                similarity = ssim_matrix(stack)
                per_image.append(similarity)
                rows = [{"model_a": a, "model_b": b, "ssim": float(similarity[p, q])}
                        for p, a in enumerate(names) for q, b in enumerate(names)]  # fmt: skip
                rec.save_table(f"ssim/{method}/{i}", pd.DataFrame(rows))
                if len(names) > 2:
                    for linkage_name, (tree, coph) in (("ward", cluster_heatmaps(stack)),
                                                       ("average_1-ssim", cluster_ssim(similarity))):  # fmt: skip
                        assignment = fcluster(tree, 2, criterion="maxclust")
                        cluster_rows += [{"method": method, "image": i, "linkage": linkage_name, "model": n,
                                          "cluster": int(c), "cophenetic": coph}
                                         for n, c in zip(names, assignment, strict=True)]  # fmt: skip
            mean_ssim[method] = torch.stack(per_image).mean(0)
        rec.save_table("clusters", pd.DataFrame(cluster_rows))
        aopc = pd.DataFrame(aopc_rows)
        rec.save_table("aopc", aopc)
        rec.save_table("predictions", pd.DataFrame(predictions))
        rec.save_table("skipped", pd.DataFrame(skipped, columns=["model", "reason"]))
        for i in range(min(len(x), 4)):
            per_model = {n: {m: maps[n][m][i] for m in self.methods} for n in names}
            rec.save_figure(f"heatmaps_{i}", heatmap_figures.grid(x[i].cpu(), per_model))
        if len(names) > 1:
            for method in self.methods:
                rec.save_figure(f"ssim_{method}", heatmap_figures.ssim(mean_ssim[method], names, method))
                if len(names) > 2:
                    tree, cophenetic = cluster_ssim(mean_ssim[method])
                    rec.save_figure(
                        f"dendrogram_{method}",
                        heatmap_figures.draw_dendrogram(tree, names, method, cophenetic=cophenetic),
                    )
        rec.save_figure("aopc", heatmap_figures.aopc(aopc))
        metrics: dict[str, Any] = {"seconds": time.perf_counter() - start, "models": len(names)}
        last = aopc[aopc["step"] == aopc["step"].max()]
        final = last[last["order"] == "morf"]
        metrics |= {f"aopc/{r.model}/{r.method}": r.score for r in final.itertuples()}
        metrics |= {f"aopc_{r.order}/{r.model}/{r.method}": r.score for r in last[last["order"] != "morf"].itertuples()}
        if self.randomisation:
            rec.save_table("randomisation", randomised)
            rec.save_figure("randomisation", heatmap_figures.randomisation(randomised))
        log_to_dashboards(ctx, {k: float(v) for k, v in metrics.items()})
        rec.log_metrics(metrics | {"skipped": skipped})
        best = final.sort_values("score", ascending=False).head(3)
        headline: dict[str, Any] = {"models": ", ".join(names), "methods": ", ".join(self.methods), "images": len(x)}
        # AOPC is read against the random order's (the same perturbation, patches in random order).
        random_order = last[last["order"] == "random"].set_index(["model", "method"])["score"]
        for r in best.itertuples():
            baseline = random_order.get((r.model, r.method))
            reference = f"random order {baseline:.4f}" if baseline is not None else "no random order in aopc_orders"
            headline[f"AOPC {r.model} {r.method}"] = f"{r.score:.4f} ({reference})"
        if skipped:
            headline["skipped"] = ", ".join(s["model"] for s in skipped)
        headline["time"] = f"{metrics['seconds']:.1f} s"
        rec.summary(f"explainlab heatmaps: {len(names)} models x {len(self.methods)} methods", headline)
        return metrics

    def _randomisation(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                       trained: dict[str, torch.Tensor], seed: int) -> pd.DataFrame:  # fmt: skip
        rows = []
        for count, _, clone in randomised_models(model, max_layers=self.randomisation_layers, seed=seed):
            randomised = self._maps(clone, x, target)
            for method in self.methods:
                for i in range(len(x)):
                    pair = torch.stack([trained[method][i], randomised[method][i]])
                    rows.append({"layers_randomised": count, "method": method, "image": i,
                                 "ssim": float(ssim_matrix(pair)[0, 1])})  # fmt: skip
        return pd.DataFrame(rows)
