"""`method=featviz`: feature visualizations of one trained model (survey 004, Secs. 2 and 4).

For each target (a channel of a layer, or a class logit): the optimised image under every setting
of the survey's spectrum (`unregularised`: raw pixels, nothing else; `regularised`: decorrelated
Fourier parameterisation, transformation robustness, total variation), a diversity batch, and for
channels the top-activating test images. Model inversion (Mahendran & Vedaldi) of the first test
image at several layers. Table results/featviz.csv (model, layer, unit, setting, objective, steps,
seconds); figures featviz_<target>, inversion.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from explainlab.errors import ConfigValueError, check_choice, check_float, check_int
from explainlab.methods.featviz import (
    alignment,
    color_correlation_sqrt,
    diversity,
    from_target,
    interpolate,
    invert,
    representation_loss,
    robustness_transforms,
    visualize,
)
from explainlab.methods.featviz.objectives import CLASS_OBJECTIVES
from explainlab.models.layers import record_activations, resolve_layers
from explainlab.results import featviz_figures
from explainlab.runner.activations import eval_device, extract
from explainlab.runner.context import RunContext
from explainlab.runner.training import log_to_dashboards, train_unless_given

SETTINGS = ("unregularised", "regularised")
COLORS = ("imagenet", "dataset")
INVERSIONS = ("fourier", "mahendran")


class FeatvizStudy:
    """Visualizations of `targets` ([{layer, channel}], [{class}] or [{classes: [..]}]) of the run's
    trained model.

    steps / lr: Adam (the survey's recipe: 2,560 steps at 0.05). transforms: the regularised
    setting's robustness transforms {pad, jitter, scales, degrees, jitter2}. tv: its total-variation
    weight. color: the decorrelation matrix of RGB models, 'imagenet' (Lucid's) or 'dataset'
    (estimated from the first `example_pool` training images, the survey's recipe). bilateral_every /
    bilateral: the regularised setting's bilateral filter every k steps (0: off) and its
    {sigma_space, sigma_color}. class_objective: 'logit', 'probability' or 'log_probability' for
    {class} targets ({classes} targets maximise the LogSumExp of their logits). diversity_batch /
    diversity_weight: the diversity batch of each channel target. interpolations: [{from: target,
    to: target}], each drawn as `interpolation_frames` images with a shared parameterisation and the
    alignment objective. inversion_layers: layers at which the first test image is inverted;
    inversion_method: 'fourier' (the regularised parameterisation with TV) or 'mahendran' (pixels,
    α-norm and TV^β: `invert`), `inversion_starts` reconstructions from different starts, with
    inversion_alpha / inversion_alpha_weight / inversion_beta. examples: top-activating test images per
    channel target, searched among the first `example_pool` test images.
    """

    def __init__(self, targets: Sequence[Mapping[str, Any]], *, steps: int = 2560, lr: float = 0.05,
                 transforms: Mapping[str, Any] | None = None, tv: float = 0.05, color: str = "imagenet",
                 bilateral_every: int = 0, bilateral: Mapping[str, float] | None = None,
                 class_objective: str = "logit", diversity_batch: int = 4, diversity_weight: float = 1.0,
                 interpolations: Sequence[Mapping[str, Any]] = (), interpolation_frames: int = 5,
                 inversion_layers: Sequence[str] = (), inversion_method: str = "fourier", inversion_starts: int = 1,
                 inversion_alpha: float = 6.0, inversion_alpha_weight: float = 0.001, inversion_beta: float = 2.0,
                 examples: int = 8, example_pool: int = 1000, seed_offset: int = 0,
                 num_classes: int | None = None) -> None:  # fmt: skip
        self.targets = [dict(_plain(t)) for t in targets]
        if not self.targets:
            raise ConfigValueError("method.targets", [], "at least one {layer, channel} or {class} entry")
        check_choice("method.class_objective", class_objective, CLASS_OBJECTIVES)
        for i, t in enumerate(self.targets):
            _objective(t, class_objective, f"method.targets[{i}]")
            for c in [t["class"]] if "class" in t else list(t.get("classes", [])):
                if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < (num_classes or 1 << 62):
                    raise ConfigValueError(f"method.targets[{i}].class", c, f"a class index in [0, {num_classes})")
        self.interpolations = [dict(_plain(pair)) for pair in interpolations]
        for i, pair in enumerate(self.interpolations):
            if set(pair) != {"from", "to"}:
                raise ConfigValueError(f"method.interpolations[{i}]", pair, "{from: TARGET, to: TARGET}")
            for end in ("from", "to"):
                _objective(dict(_plain(pair[end])), class_objective, f"method.interpolations[{i}].{end}")
        check_int("method.steps", steps, minimum=1)
        check_int("method.diversity_batch", diversity_batch, minimum=0)
        check_int("method.interpolation_frames", interpolation_frames, minimum=2)
        check_choice("method.color", color, COLORS)
        check_int("method.bilateral_every", bilateral_every, minimum=0)
        self.bilateral = {"sigma_space": 1.0, "sigma_color": 0.1} | dict(_plain(bilateral) or {})
        for key in self.bilateral:
            check_choice("method.bilateral", key, ("sigma_space", "sigma_color", "size"))
        check_choice("method.inversion_method", inversion_method, INVERSIONS)
        check_int("method.inversion_starts", inversion_starts, minimum=1)
        check_float("method.inversion_alpha", inversion_alpha, low=1.0, high=1e3)
        check_float("method.inversion_alpha_weight", inversion_alpha_weight, low=0.0, high=1e6)
        check_float("method.inversion_beta", inversion_beta, low=0.0, high=1e3, closed=False)
        self.steps, self.lr, self.tv, self.color, self.bilateral_every = steps, lr, tv, color, bilateral_every
        self.transforms = dict(transforms or {"pad": 16, "jitter": 16, "scales": [1, 0.975, 1.025, 0.95, 1.05],
                                              "degrees": 5, "jitter2": 8})  # fmt: skip
        self.class_objective, self.interpolation_frames = class_objective, interpolation_frames
        self.diversity_batch, self.diversity_weight = diversity_batch, diversity_weight
        self.inversion_layers, self.inversion_method = list(inversion_layers), inversion_method
        self.inversion_starts, self.inversion_alpha = inversion_starts, inversion_alpha
        self.inversion_alpha_weight, self.inversion_beta = inversion_alpha_weight, inversion_beta
        self.examples, self.example_pool, self.seed_offset = examples, example_pool, seed_offset

    def _setting(self, name: str, channels: int, size: int, color: torch.Tensor | None = None) -> dict[str, Any]:
        """visualize() arguments of a setting: 'unregularised' (pixels), 'regularised' (decorrelated
        Fourier + TV + transformation robustness + the bilateral filter when on) or 'inversion' (the same
        without the transforms: the reconstruction must match the representation of the image where it
        is, and random shifts, scales and rotations would average it into a blur — Mahendran & Vedaldi
        regularise with TV). color: the decorrelation matrix (None: ImageNet's)."""
        if name == "unregularised":
            return {"param": "pixel", "decorrelate": False, "squash": "clamp"}
        common = {"param": "fourier", "decorrelate": channels == 3, "tv": self.tv, "color_matrix": color}
        if name == "inversion":
            return common
        # The model sees its own input size again after padding and scaling (fixed-size classifiers).
        transforms = {**self.transforms, "size": size}
        transforms["scales"] = list(transforms.get("scales", []))
        return common | {"transforms": robustness_transforms(**transforms), "bilateral_every": self.bilateral_every,
                         "bilateral": self.bilateral}  # fmt: skip

    def _row(self, cfg: DictConfig, layer: str, unit: str, setting: str, result: Any) -> dict[str, Any]:
        """One line of featviz.csv."""
        return {"model": cfg.model.name, "layer": layer, "unit": unit, "setting": setting,
                "objective": result.trace[-1], "steps": self.steps, "seconds": result.seconds}  # fmt: skip

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        start = time.perf_counter()
        ctx = RunContext(cfg)
        model = ctx.model
        layers = [t["layer"] for t in self.targets if "layer" in t] + self.inversion_layers
        layers += [end["layer"] for pair in self.interpolations for end in pair.values() if "layer" in end]
        resolve_layers(model, layers, key="method.targets")
        train_unless_given(ctx, record=False)
        device = eval_device(cfg.trainer.get("accelerator"))
        model = model.eval().to(device)
        c, size = cfg.dataset.in_channels, cfg.model.image_size
        seed = cfg.seed + self.seed_offset
        test = ctx.datamodule.dataset("test")
        pool, pool_labels = test.__getitems__(list(range(min(self.example_pool, len(test)))))
        color = None
        if self.color == "dataset" and c == 3:
            train = ctx.datamodule.dataset("train")
            color = color_correlation_sqrt(train.__getitems__(list(range(min(self.example_pool, len(train)))))[0])
        run = {"steps": self.steps, "lr": self.lr, "seed": seed, "device": device}
        rows, panels = [], {}
        for target in self.targets:
            objective, label = from_target(target, self.class_objective)
            images: dict[str, torch.Tensor] = {}
            for setting in SETTINGS:
                result = visualize(model, objective, shape=(1, c, size, size), **run,
                                   **self._setting(setting, c, size, color))  # fmt: skip
                images[setting] = result.images[0].cpu()
                rows.append(self._row(cfg, target.get("layer", "logits"), label, setting, result))
            if self.diversity_batch > 1 and "layer" in target:
                result = visualize(model, objective + self.diversity_weight * diversity(target["layer"]),
                                   shape=(self.diversity_batch, c, size, size), **run,
                                   **self._setting("regularised", c, size, color))  # fmt: skip
                images |= {f"diverse {i}": img.cpu() for i, img in enumerate(result.images)}
                rows.append(self._row(cfg, target["layer"], label, "diversity", result))
            if "layer" in target and self.examples:
                acts = extract(model, [(pool, pool_labels)], [target["layer"]], device=device, flatten=False,
                               with_logits=False)[target["layer"]]  # fmt: skip
                strength = acts[:, int(target["channel"])].flatten(1).mean(1)
                top = strength.argsort(descending=True)[: self.examples]
                images |= {f"example {int(i)}": pool[i] for i in top}
            panels[label] = images
        for pair in self.interpolations:
            (first, a), (last, b) = from_target(pair["from"], self.class_objective), from_target(pair["to"],
                                                                                                  self.class_objective)
            objective = interpolate(first, last)
            if objective.layers:
                objective = objective + alignment(objective.layers[0])
            result = visualize(model, objective, shape=(self.interpolation_frames, c, size, size), shared=True, **run,
                               **self._setting("regularised", c, size, color))  # fmt: skip
            label = f"{a} -> {b}"
            panels[label] = {f"t={i / (len(result.images) - 1):.2f}": img.cpu() for i, img in enumerate(result.images)}
            rows.append(self._row(cfg, ",".join(objective.layers) or "logits", label, "interpolation", result))
        inversions = self._invert(model, pool[:1], c, size, color, run, rows, cfg) if self.inversion_layers else {}
        rec = ctx.recorder
        rec.save_config(cfg)
        table = pd.DataFrame(rows)
        rec.save_table("featviz", table)
        for label, images in panels.items():
            name = label.replace(":", "_").replace(".", "_").replace(",", "_").replace(" -> ", "_to_")
            rec.save_figure(f"featviz_{name}", featviz_figures.panel(label, images))
        if inversions:
            rec.save_figure("inversion", featviz_figures.panel("model inversion of test image 0", inversions))
        metrics = {"seconds": time.perf_counter() - start, "visualizations": len(table)}
        log_to_dashboards(ctx, {k: float(v) for k, v in metrics.items()})
        rec.log_metrics(metrics)
        headline: dict[str, Any] = {"model": cfg.model.name, "targets": ", ".join(panels), "steps": self.steps}
        headline |= {f"{r['unit']} ({r['setting']})": r["objective"] for r in rows[:8]}
        headline["time"] = f"{metrics['seconds']:.1f} s"
        rec.summary(f"explainlab featviz: {cfg.model.name}", headline)
        return metrics

    def _invert(self, model: torch.nn.Module, image: torch.Tensor, c: int, size: int, color: torch.Tensor | None,
                run: dict[str, Any], rows: list[dict[str, Any]],
                cfg: DictConfig) -> dict[str, torch.Tensor]:  # fmt: skip
        """Reconstructions of `image` (1, C, H, W) at every inversion layer, `inversion_starts` each."""
        out = {"original": image[0]}
        with torch.no_grad():
            refs = record_activations(model, image.to(run["device"]), self.inversion_layers)
        for layer in self.inversion_layers:
            if self.inversion_method == "mahendran":
                result = invert(model, layer, image, starts=self.inversion_starts, alpha=self.inversion_alpha,
                                alpha_weight=self.inversion_alpha_weight, beta=self.inversion_beta, tv_weight=self.tv,
                                **run)  # fmt: skip
            else:
                result = visualize(model, representation_loss(layer, refs[layer]),
                                   shape=(self.inversion_starts, c, size, size), **run,
                                   **self._setting("inversion", c, size, color))  # fmt: skip
            for i, img in enumerate(result.images):
                out[layer if i == 0 else f"{layer} start {i}"] = img.cpu()
            rows.append(self._row(cfg, layer, "image 0", "inversion", result))
        return out


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value


def _objective(target: Mapping[str, Any], class_objective: str, key: str) -> None:
    """Refuse a target spec that `from_target` cannot read, naming its key."""
    try:
        from_target(target, class_objective)
    except (ValueError, TypeError, KeyError):
        expected = "{layer: NAME, channel: INT}, {class: INT} or {classes: [INT, ...]}"
        raise ConfigValueError(key, target, expected) from None
