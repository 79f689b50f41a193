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
from omegaconf import DictConfig, OmegaConf

from explainlab.errors import ConfigValueError, check_int
from explainlab.methods.featviz import channel, diversity, logit, representation_loss, robustness_transforms, visualize
from explainlab.models.layers import resolve_layers
from explainlab.results import featviz_figures
from explainlab.runner.activations import eval_device, extract
from explainlab.runner.context import RunContext
from explainlab.runner.training import log_to_dashboards, train_unless_given

SETTINGS = ("unregularised", "regularised")


class FeatvizStudy:
    """Visualizations of `targets` ([{layer, channel}] or [{class}]) of the run's trained model.

    steps / lr: Adam (the survey's recipe: 2,560 steps at 0.05). transforms: the regularised
    setting's robustness transforms {pad, jitter, scales, degrees, jitter2}. tv: its total-variation
    weight. diversity_batch / diversity_weight: the diversity batch of each target. inversion_layers:
    layers at which the first test image is inverted. examples: top-activating test images per
    channel target, searched among the first `example_pool` test images.
    """

    def __init__(self, targets: Sequence[Mapping[str, Any]], *, steps: int = 2560, lr: float = 0.05,
                 transforms: Mapping[str, Any] | None = None, tv: float = 0.05, diversity_batch: int = 4,
                 diversity_weight: float = 1.0, inversion_layers: Sequence[str] = (), examples: int = 8,
                 example_pool: int = 1000, seed_offset: int = 0, num_classes: int | None = None) -> None:  # fmt: skip
        self.targets = [dict(OmegaConf.to_container(t) if isinstance(t, DictConfig) else t) for t in targets]
        if not self.targets:
            raise ConfigValueError("method.targets", [], "at least one {layer, channel} or {class} entry")
        for i, t in enumerate(self.targets):
            if not ({"layer", "channel"} == set(t) or {"class"} == set(t)):
                raise ConfigValueError(f"method.targets[{i}]", t, "{layer: NAME, channel: INT} or {class: INT}")
            value = t.get("class", 0)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (num_classes or 1 << 62):
                raise ConfigValueError(f"method.targets[{i}].class", value, f"a class index in [0, {num_classes})")
            check_int(f"method.targets[{i}].channel", t.get("channel", 0), minimum=0)
        check_int("method.steps", steps, minimum=1)
        check_int("method.diversity_batch", diversity_batch, minimum=0)
        self.steps, self.lr, self.tv = steps, lr, tv
        self.transforms = dict(transforms or {"pad": 16, "jitter": 16, "scales": [1, 0.975, 1.025, 0.95, 1.05],
                                              "degrees": 5, "jitter2": 8})  # fmt: skip
        self.diversity_batch, self.diversity_weight = diversity_batch, diversity_weight
        self.inversion_layers, self.examples, self.example_pool = list(inversion_layers), examples, example_pool
        self.seed_offset = seed_offset

    def _setting(self, name: str, channels: int, size: int) -> dict[str, Any]:
        """visualize() arguments of a setting: 'unregularised' (pixels), 'regularised' (decorrelated
        Fourier + TV + transformation robustness) or 'inversion' (the same without the transforms: the
        reconstruction must match the representation of the image where it is, and random shifts,
        scales and rotations would average it into a blur — Mahendran & Vedaldi regularise with TV)."""
        if name == "unregularised":
            return {"param": "pixel", "decorrelate": False, "squash": "clamp"}
        if name == "inversion":
            return {"param": "fourier", "decorrelate": channels == 3, "tv": self.tv}
        # The model sees its own input size again after padding and scaling (fixed-size classifiers).
        transforms = {**self.transforms, "size": size}
        transforms["scales"] = list(transforms.get("scales", []))
        return {"param": "fourier", "decorrelate": channels == 3, "transforms": robustness_transforms(**transforms),
                "tv": self.tv}  # fmt: skip

    def _row(self, cfg: DictConfig, layer: str, unit: str, setting: str, result: Any) -> dict[str, Any]:
        """One line of featviz.csv."""
        return {"model": cfg.model.name, "layer": layer, "unit": unit, "setting": setting,
                "objective": result.trace[-1], "steps": self.steps, "seconds": result.seconds}  # fmt: skip

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        start = time.perf_counter()
        ctx = RunContext(cfg)
        model = ctx.model
        layers = [t["layer"] for t in self.targets if "layer" in t] + self.inversion_layers
        resolve_layers(model, layers, key="method.targets")
        train_unless_given(ctx, record=False)
        device = eval_device(cfg.trainer.get("accelerator"))
        model = model.eval().to(device)
        c, size = cfg.dataset.in_channels, cfg.model.image_size
        seed = cfg.seed + self.seed_offset
        test = ctx.datamodule.dataset("test")
        pool, pool_labels = test.__getitems__(list(range(min(self.example_pool, len(test)))))
        rows, panels = [], {}
        for target in self.targets:
            if "layer" in target:
                objective, label = (
                    channel(target["layer"], int(target["channel"])),
                    f"{target['layer']}:{target['channel']}",
                )
            else:
                objective, label = logit(int(target["class"])), f"class:{target['class']}"
            images: dict[str, torch.Tensor] = {}
            for setting in SETTINGS:
                result = visualize(model, objective, shape=(1, c, size, size), steps=self.steps, lr=self.lr, seed=seed,
                                   device=device, **self._setting(setting, c, size))  # fmt: skip
                images[setting] = result.images[0].cpu()
                rows.append(self._row(cfg, target.get("layer", "logits"), label, setting, result))
            if self.diversity_batch > 1 and "layer" in target:
                result = visualize(model, objective + self.diversity_weight * diversity(target["layer"]),
                                   shape=(self.diversity_batch, c, size, size), steps=self.steps, lr=self.lr,
                                   seed=seed, device=device, **self._setting("regularised", c, size))  # fmt: skip
                images |= {f"diverse {i}": img.cpu() for i, img in enumerate(result.images)}
                rows.append(self._row(cfg, target["layer"], label, "diversity", result))
            if "layer" in target and self.examples:
                acts = extract(model, [(pool, pool_labels)], [target["layer"]], device=device, flatten=False,
                               with_logits=False)[target["layer"]]  # fmt: skip
                strength = acts[:, int(target["channel"])].flatten(1).mean(1)
                top = strength.argsort(descending=True)[: self.examples]
                images |= {f"example {int(i)}": pool[i] for i in top}
            panels[label] = images
        inversions: dict[str, torch.Tensor] = {}
        if self.inversion_layers:
            refs = extract(model, [(pool[:1], pool_labels[:1])], self.inversion_layers, device=device, flatten=False,
                           with_logits=False)  # fmt: skip
            inversions["original"] = pool[0]
            for layer in self.inversion_layers:
                result = visualize(model, representation_loss(layer, refs[layer]), shape=(1, c, size, size),
                                   steps=self.steps, lr=self.lr, seed=seed, device=device,
                                   **self._setting("inversion", c, size))  # fmt: skip
                inversions[layer] = result.images[0].cpu()
                rows.append(self._row(cfg, layer, "image 0", "inversion", result))
        rec = ctx.recorder
        rec.save_config(cfg)
        table = pd.DataFrame(rows)
        rec.save_table("featviz", table)
        for label, images in panels.items():
            rec.save_figure(
                f"featviz_{label.replace(':', '_').replace('.', '_')}", featviz_figures.panel(label, images)
            )
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
