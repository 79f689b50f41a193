"""`method=detect`: CPL beside the established detectors of adversarial inputs, on the same clean
test images and the same PGD images (science in `methods/detection/`).

Tables (results/): detection.csv (one row per detector, protocol, filter and eps, with the attack's
success rate and robust accuracy beside AUROC, AUPR, FPR at 95% TPR), detection_scores.csv.
Figures (figures/): detection_auroc, detection_roc, detection_histograms.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from explainlab.attacks.pgd import check_batch_statistics
from explainlab.errors import ConfigValueError, check_choice, check_int
from explainlab.methods.detection import DETECTORS, Entry, Inputs, fit_all, fit_libraries, make_detector
from explainlab.methods.detection import run_protocols
from explainlab.methods.library import FactoredHAPs
from explainlab.methods.library.fitting import threshold_sets
from explainlab.models.layers import resolve_layers
from explainlab.models.loading import fingerprint
from explainlab.results import detection_figures
from explainlab.runner.distributed import Workers
from explainlab.runner.context import RunContext
from explainlab.runner.attacked import AttackCache, attacked_images
from explainlab.runner.detection_inputs import OUTLIER_SETS, cached_pooled_split, detector_inputs, outlier_images
from explainlab.runner.activations import FeatureCache, cached_split_features, eval_device, plan_storage
from explainlab.runner.training import train_unless_given

log = logging.getLogger(__name__)
_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def _plain(value: Any) -> Any:
    return OmegaConf.to_object(value) if isinstance(value, DictConfig) or OmegaConf.is_list(value) else value


class DetectionStudy:
    """Fit every detector in `detectors` on clean training data, score the first `images` test
    images clean and under PGD at every `attack.eps_list` radius, report both protocols.

    layers: taps of the CPL libraries; feature_layers: taps the feature detectors read (null = all
        but the last, the output layer; knn reads the last of them). train_images: first N training
        images fitting the feature detectors (null = all). detector_args: {name: keyword arguments}.
    cpl: {thresholds (one set per θ for all layers), threshold_sets ({name: {layer: θ}}, replaces
        them), top_k, softmax}. held_out: fraction of the images fitting the supervised combination.
    """

    def __init__(
        self,
        layers: Sequence[str],
        detectors: Sequence[str] = ("msp", "energy", "mahalanobis", "knn", "deep_knn", "lid", "cpl"),
        feature_layers: Sequence[str] | None = None,
        images: int = 200,
        train_images: int | None = None,
        protocols: Sequence[str] = ("benign", "supervised"),
        filter: Sequence[bool] = (False, True),  # noqa: A002 - the config key users write
        held_out: float = 0.5,
        detector_args: Mapping[str, Any] | None = None,
        cpl: Mapping[str, Any] | None = None,
        scenario: str = "adversarial",
        outliers: Sequence[str] = ("uniform_noise",),
        hap_dtype: str = "float32",
        factored_taps: bool = True,
        progress: bool = True,
    ) -> None:
        self.layers, self.detectors = list(layers), list(_plain(detectors))
        for name in self.detectors:
            if name not in DETECTORS:
                raise ConfigValueError("method.detectors", name, "names among " + ", ".join(DETECTORS))
        self.feature_layers = list(feature_layers) if feature_layers else self.layers[:-1] or self.layers
        check_int("method.images", images, minimum=2)
        check_int("method.train_images", train_images, minimum=2, optional=True)
        for p in _plain(protocols):
            check_choice("method.protocols", p, ("benign", "supervised"))
        if not 0.0 < float(held_out) < 1.0:
            raise ConfigValueError("method.held_out", held_out, "a fraction in (0, 1)")
        check_choice("method.hap_dtype", hap_dtype, _DTYPES)
        check_choice("method.scenario", scenario, ("adversarial", "ood"))
        self.scenario, self.outliers = scenario, list(_plain(outliers) or [])
        for name in self.outliers:
            check_choice("method.outliers", name, OUTLIER_SETS)
        if scenario == "ood" and not self.outliers:
            raise ConfigValueError("method.outliers", outliers, "at least one of " + ", ".join(OUTLIER_SETS))
        self.images, self.train_images, self.protocols = images, train_images, list(_plain(protocols))
        self.filters, self.held_out = [bool(f) for f in _plain(filter)], float(held_out)
        self.detector_args = {k: dict(v or {}) for k, v in dict(_plain(detector_args) or {}).items()}
        self.cpl = {"thresholds": [0.6], "threshold_sets": None, "top_k": 20, "softmax": True}
        self.cpl.update(dict(_plain(cpl) or {}))
        self.hap_dtype, self.factored_taps, self.progress = _DTYPES[hap_dtype], factored_taps, progress

    def threshold_sets(self) -> dict[str, dict[str, float]]:
        sets, default = self.cpl["threshold_sets"], self.cpl["thresholds"]
        return threshold_sets(sets, self.layers, default, key="method.cpl.threshold_sets")

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        start = time.perf_counter()
        ctx = RunContext(cfg)
        resolve_layers(ctx.model, [*self.layers, *self.feature_layers], key="method.layers")
        if self.scenario == "adversarial" and not cfg.get("attack"):
            raise ConfigValueError("attack", None, "an attack (attack=pgd_linf): the study scores attacked images")
        attack = instantiate(cfg.attack) if self.scenario == "adversarial" else None
        sets = self.threshold_sets() if "cpl" in self.detectors else {}
        entries, cpl_fit_s = self._entries(sets), 0.0  # built before any work: bad arguments fail here
        train_unless_given(ctx)
        device = eval_device(cfg.trainer.get("accelerator"))
        model, data = ctx.model.eval().to(device), ctx.datamodule
        spec = {"model": fingerprint(ctx.model), "data": ctx.data_spec(drop=("batch_size",))}
        cache, batch = FeatureCache(cfg.paths.cache_dir), data.eval_batch_size
        train_split = data.dataset("train")
        pooled = cached_pooled_split(
            model, train_split, self.feature_layers, spec={**spec, "split": "train"}, cache=cache, batch_size=batch,
            device=device, limit=self.train_images, progress=self.progress,
        )  # fmt: skip
        train = Inputs({"pooled": pooled}, pooled["logits"], pooled["labels"])
        x, y = data.dataset("test")[0 : self.images]
        if attack is not None:
            check_batch_statistics(attack, len(y))  # attack.compat_bn_train over several batches: warned
        storage = plan_storage(model, self.layers, x[:1].to(device), self.hap_dtype, factor=self.factored_taps)
        read = {"feature_layers": self.feature_layers, "hap_layers": self.layers if sets else []}
        read |= {"storage": storage, "device": device, "batch_size": batch}
        clean = detector_inputs(model, x, y, **read)
        attacked, reused = {}, []
        for name in self.outliers if attack is None else ():
            other = outlier_images(name, len(y), x.shape[1], x.shape[-1], seed=cfg.seed, data_dir=cfg.paths.data_dir)
            attacked[name] = detector_inputs(model, other, y, **read)
        for eps in attack.eps_list if attack is not None else ():
            adv, hit = attacked_images(
                model, attack.with_eps(eps), x, y, seed=cfg.seed, device=device, cache=AttackCache(cfg.paths.cache_dir),
                spec={**spec, "images": f"test[0:{len(y)}]"},
            )  # fmt: skip
            attacked[eps], reused = detector_inputs(model, adv, y, **read), [*reused, hit]
        if sets:  # every threshold set's libraries from one construction pass per layer
            haps = cached_split_features(
                model, train_split, self.layers, spec={**spec, "split": "train"}, cache=cache, batch_size=batch,
                device=device, dtype=storage[1], factored=storage[0],
                map_units=Workers(progress=self.progress).mapper("activations (train)"),
            )  # fmt: skip
            haps.update({k: FactoredHAPs(haps[k]) for k in storage[0]})
            started = time.perf_counter()
            needed = {layer: sorted({s[layer] for s in sets.values()}) for layer in self.layers}
            libraries = fit_libraries(haps, needed, haps["logits"], device=device, progress=self.progress)
            for entry in entries:
                if entry.name == "cpl":
                    entry.detector.use_libraries(libraries)
            cpl_fit_s = (time.perf_counter() - started) / len(sets)
        fit_all(entries, train)
        for entry in entries:
            entry.fit_s = cpl_fit_s if entry.name == "cpl" else entry.fit_s
        rows, scores = run_protocols(
            entries, clean, attacked, y, protocols=self.protocols, filters=self.filters, held_out=self.held_out,
            seed=cfg.seed, scenario=self.scenario, key="eps" if attack is not None else "outliers",
        )  # fmt: skip
        return self._record(ctx, pd.DataFrame(rows), pd.DataFrame(scores), start, reused)

    def _entries(self, sets: dict[str, dict[str, float]]) -> list[Entry]:
        entries = []
        for name in self.detectors:
            kwargs = self.detector_args.get(name, {})
            if name == "cpl":
                cpl = {"top_k": self.cpl["top_k"], "softmax": self.cpl["softmax"]}
                entries += [Entry("cpl", make_detector("cpl", thresholds=s, **cpl), key) for key, s in sets.items()]
                continue
            try:
                entries.append(Entry(name, make_detector(name, layers=self.feature_layers, **kwargs)))
            except TypeError as err:
                raise ConfigValueError(f"method.detector_args.{name}", kwargs, f"arguments {name} takes ({err})") from err
        return entries

    def _record(self, ctx: RunContext, table: pd.DataFrame, scores: pd.DataFrame, start: float, reused: list) -> dict:
        rec, cfg = ctx.recorder, ctx.cfg
        key = "eps" if self.scenario == "adversarial" else "outliers"
        rec.save_config(cfg)
        rec.save_table("detection", table)
        rec.save_table("detection_scores", scores)
        if key == "eps":
            rec.save_figure("detection_auroc", detection_figures.auroc_vs_eps(table))
        rec.save_figure("detection_roc", detection_figures.roc_curves(scores, key))
        rec.save_figure("detection_histograms", detection_figures.histograms(scores, key=key))
        metrics: dict[str, Any] = {"seconds": time.perf_counter() - start, "attacks_reused": sum(reused)}
        headline: dict[str, Any] = {}
        main = table[(table.protocol == "benign") & (~table.filtered)] if "auroc" in table else table.iloc[:0]
        for at, rows in main.groupby(key, sort=False):
            at = f"{key}={at:g}" if key == "eps" else str(at)
            msp = rows[rows.detector == "msp"]["auroc"]
            base = f"msp {msp.iloc[0]:.3f}, " if len(msp) else ""
            first = rows.iloc[0]
            if key == "eps":
                headline[f"{at}: attack success / robust acc."] = (
                    f"{first.attack_success_rate:.3f} / {first.robust_accuracy:.3f}"
                )
            for row in rows.itertuples():
                label = row.detector + (f"[{row.threshold_set}]" if row.threshold_set else "")
                metrics[f"auroc/{label}/{at}"] = row.auroc
                if row.detector != "msp":
                    headline[f"{at} AUROC {label}"] = f"{row.auroc:.3f} ({base}chance 0.5)"
        if reused:
            headline["attacked images from the cache"] = f"{sum(reused)} of {len(reused)} radii"
        headline["time"] = f"{metrics['seconds']:.1f} s"
        rec.log_metrics(metrics)
        rec.summary(f"explainlab detect ({self.scenario}): {cfg.model.name} on {ctx.datamodule.name}", headline)
        return metrics
