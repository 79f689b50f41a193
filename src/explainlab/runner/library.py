"""`method=library`: library networks of several layers and thresholds on a trained classifier,
their predictions of the DNN's answers, confusion indices, and CPL-based detection of PGD inputs.

Tables (results/): library_sizes.csv, predictions.csv, confusion/<layer>_<threshold>.csv,
cpl.csv, auroc.csv. Figures (figures/): library_sizes, agreement, confusion_<threshold>,
cpl_histograms, auroc.
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

from explainlab.errors import ConfigValueError, check_choice, check_int
from explainlab.methods.library import (
    FactoredHAPs,
    HebbianSums,
    LibraryNetwork,
    agreement,
    associate_libraries,
    build_libraries,
    confusion_index,
    cpl_tables,
    predict_scores_many,
)
from explainlab.models.layers import resolve_layers
from explainlab.models.loading import fingerprint
from explainlab.results import library_figures
from explainlab.runner.activations import FeatureCache, cached_split_features, eval_device, extract, plan_storage
from explainlab.runner.checkpoint_cache import CheckpointCache
from explainlab.runner.context import RunContext
from explainlab.runner.distributed import Workers, launch_processes, wants_processes
from explainlab.runner.training import TrainingResult, ensure_trained, log_to_dashboards, write_training_outputs

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "float64": torch.float64}


def _as_list(value: Any) -> list[float]:
    return [float(t) for t in (value if isinstance(value, Sequence) and not isinstance(value, str) else [value])]


def _per_layer(common: Any, per_layer: Mapping[str, Any] | None, layers: Sequence[str]) -> dict[str, list[float]]:
    """θ lists per layer: `common` (one θ or a list) for every layer, replaced by `per_layer[layer]`
    for the layers that mapping names."""
    per_layer = dict(per_layer or {})
    unknown = sorted(set(per_layer) - set(layers))
    if unknown:
        raise ConfigValueError("method.layer_thresholds", unknown, f"names among the studied layers {list(layers)}")
    return {layer: _as_list(per_layer.get(layer, common)) for layer in layers}


class LibraryStudy:
    """The library-network study of paper 001 on the configured model and data set.

    layers: taps (raw module outputs) to build libraries for.
    thresholds: θ list for every layer; `threshold` (one θ for all layers, for sweeps like
        `method.threshold=0.5,0.6`) replaces it when set.
    layer_thresholds: {layer: θ list} replacing `thresholds` for the layers it names.
    top_k: most similar nodes used by the prediction (Eq. 3; 3 for the MNIST CNN, 8 for ResNet44).
    confusion: {variant: paper|original, thresholds: θ values whose matrices are plotted}.
    cpl: {top_k, softmax, pairs (null = all), threshold_sets ({name: {layer: θ}}; null = one set
        per θ of `thresholds`), images (first N test images attacked, in order)}.
    hap_dtype: storage of cached activations (float32, float16).
    factored_taps: hold affine taps (conv/linear raw outputs) through their shorter inputs; exact,
        and e.g. 27x fewer dimensions for the MNIST CNN's conv1 (`methods/library/patterns.py`).
    """

    def __init__(
        self,
        layers: Sequence[str],
        thresholds: Any = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
        threshold: float | None = None,
        layer_thresholds: Mapping[str, Any] | None = None,
        top_k: int = 3,
        confusion: Mapping[str, Any] | None = None,
        cpl: Mapping[str, Any] | None = None,
        hap_dtype: str = "float32",
        block_size: int = 4096,
        progress: bool = True,
        save_libraries: bool = False,
        factored_taps: bool = True,
    ) -> None:
        self.layers = list(layers)
        common = threshold if threshold is not None else thresholds
        if isinstance(layer_thresholds, DictConfig):
            layer_thresholds = OmegaConf.to_object(layer_thresholds)
        self.thresholds = _per_layer(common, layer_thresholds, self.layers)
        for layer, values in self.thresholds.items():
            for t in values:
                if not -1.0 < t <= 1.0:
                    raise ConfigValueError("method.thresholds", t, f"a cosine threshold in (-1, 1] (layer {layer})")
        check_int("method.top_k", top_k, minimum=1)
        check_choice("method.hap_dtype", hap_dtype, _DTYPES)
        self.top_k, self.hap_dtype, self.block_size, self.progress = top_k, _DTYPES[hap_dtype], block_size, progress
        self.confusion = {"variant": "paper", "thresholds": [0.65, 0.75], **(dict(confusion or {}))}
        check_choice("method.confusion.variant", self.confusion["variant"], ("paper", "original"))
        self.cpl = {
            "top_k": 20,
            "softmax": True,
            "pairs": None,
            "threshold_sets": None,
            "images": 200,
            **(dict(cpl or {})),
        }
        self.save_libraries = save_libraries
        self.factored_taps = factored_taps

    # ------------------------------------------------------------------------------------------
    def threshold_sets(self) -> dict[str, dict[str, float]]:
        sets = self.cpl["threshold_sets"]
        if sets:
            sets = {str(name): {layer: float(t) for layer, t in dict(s).items()} for name, s in dict(sets).items()}
            for name, s in sets.items():
                if set(s) != set(self.layers):
                    raise ConfigValueError(f"method.cpl.threshold_sets.{name}", s, f"one θ for each of {self.layers}")
            return sets
        common = sorted(set.intersection(*(set(v) for v in self.thresholds.values())))
        return {f"theta={t:g}": {layer: t for layer in self.layers} for t in common}

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        ctx = RunContext(cfg)
        resolve_layers(ctx.model, self.layers, key="method.layers")
        trained = None
        if not (cfg.model.get("pretrained") or cfg.model.get("checkpoint")):
            trained = ensure_trained(ctx)
            if not trained.rank_zero:  # DDP rank > 0 of the subprocess launcher: help below
                return self._analyse(ctx, trained, eval_device(cfg.trainer.get("accelerator")))
            write_training_outputs(ctx, trained)
        if wants_processes(cfg.trainer) and not Workers().distributed:
            return launch_processes(cfg.trainer, _analyse_on_rank, self, cfg, trained)
        device = Workers().device_hint or eval_device(cfg.trainer.get("accelerator"))
        return self._analyse(ctx, trained, device)

    def _analyse(self, ctx: RunContext, trained: TrainingResult | None, device: torch.device) -> dict[str, Any]:
        """Everything after training; on several DDP processes when torch.distributed is initialised
        (each rank computes its share of batches and blocks; rank 0 builds libraries and writes)."""
        cfg = ctx.cfg
        workers = Workers(progress=self.progress)
        start = time.perf_counter()
        model = ctx.model
        if trained is not None and workers.distributed:
            workers.barrier()  # rank 0 has written the trained weights to the cache
            model.net.load_state_dict(CheckpointCache(cfg.paths.cache_dir).get(ctx.training_spec())["state_dict"])
        model.eval().to(device)
        weights = fingerprint(model)
        data = ctx.datamodule
        data_spec = ctx.data_spec(drop=("batch_size",))
        cache = FeatureCache(cfg.paths.cache_dir)
        example = data.dataset("test")[0:1][0].to(device)
        factored, dtypes = plan_storage(model, self.layers, example, self.hap_dtype, factor=self.factored_taps)
        if factored:
            log.info("taps held through their inputs (exact, fewer dimensions): %s", ", ".join(factored))
        feats = {}
        for split in ("train", "test"):
            feats[split] = cached_split_features(
                model,
                data.dataset(split),
                self.layers,
                spec={"model": weights, "data": data_spec, "split": split},
                cache=cache,
                batch_size=data.eval_batch_size,
                device=device,
                dtype=dtypes,
                map_units=workers.mapper(f"activations ({split})"),
                write=workers.is_main,
                factored=factored,
            )
            feats[split].update({layer: FactoredHAPs(feats[split][layer]) for layer in factored})
        workers.barrier()
        n_classes = cfg.model.num_classes
        train_pred = feats["train"]["logits"].argmax(1)
        test_pred, test_labels = feats["test"]["logits"].argmax(1), feats["test"]["labels"]
        dnn_acc = float((test_pred == test_labels).float().mean())
        rec = ctx.recorder if workers.is_main else None
        if rec is not None:
            rec.save_config(cfg)

        sets = self.threshold_sets()
        needed = {
            layer: sorted(set(self.thresholds[layer]) | {s[layer] for s in sets.values()}) for layer in self.layers
        }
        libraries: dict[tuple[str, float], LibraryNetwork] = {}
        size_rows, pred_rows = [], []
        confusion_plot: dict[float, dict[str, torch.Tensor]] = {}
        plot_thresholds = self.confusion["thresholds"]
        for layer in self.layers:
            train_haps = feats["train"][layer]
            built = None
            if workers.is_main:  # inherently sequential: built once, summing the links it can on the way
                sums = HebbianSums(train_pred, n_classes)
                indices = build_libraries(
                    train_haps,
                    needed[layer],
                    block_size=self.block_size,
                    device=device,
                    progress=self.progress,
                    hebbian=sums,
                )
                built = indices, sums
            indices, sums = workers.from_main(built)
            fitted = associate_libraries(
                train_haps,
                indices,
                train_pred,
                n_classes,
                block_size=self.block_size,
                device=device,
                map_units=workers.mapper(f"Hebbian links ({layer})"),
                hebbian=sums,
            )
            studied = {t: fitted[t] for t in self.thresholds[layer]}
            test_scores = predict_scores_many(
                studied, feats["test"][layer], self.top_k, map_units=workers.mapper(f"predictions ({layer})")
            )
            for t in needed[layer]:
                lib = libraries[(layer, t)] = fitted[t]
                if self.save_libraries and workers.is_main:
                    lib.save(ctx.output_dir / "libraries" / f"{layer}_{t:g}.pt", layer=layer, model_hash=weights)
                if t not in self.thresholds[layer]:
                    continue
                scores = test_scores[t].cpu()
                size_rows.append({"layer": layer, "threshold": t, "size": lib.size_})
                pred_rows.append({"layer": layer, "threshold": t, "top_k": self.top_k, "n": len(scores),
                                  **agreement(scores, test_pred, test_labels)})  # fmt: skip
                ci = confusion_index(scores, test_labels, variant=self.confusion["variant"])
                classes = list(data.classes) or [str(i) for i in range(n_classes)]
                if rec is not None:
                    rec.save_table(
                        f"confusion/{layer}_{t:g}",
                        pd.DataFrame(ci.numpy(), index=classes, columns=classes).rename_axis("true").reset_index(),
                    )
                if plot_thresholds is None or any(abs(t - p) < 1e-12 for p in plot_thresholds):
                    confusion_plot.setdefault(t, {})[layer] = ci
        sizes, predictions = pd.DataFrame(size_rows), pd.DataFrame(pred_rows)
        auroc = self._cpl_study(ctx, model, libraries, sets, feats["test"], device, workers, (factored, dtypes))
        if rec is None:
            return {}
        rec.save_table("library_sizes", sizes)
        rec.save_table("predictions", predictions)
        rec.save_figure("library_sizes", library_figures.sizes(sizes))
        rec.save_figure("agreement", library_figures.agreement(predictions))
        classes = list(data.classes) or [str(i) for i in range(n_classes)]
        for t, by_layer in confusion_plot.items():
            rec.save_figure(f"confusion_{t:g}", library_figures.confusion(by_layer, classes, t))
        headline = {"DNN test accuracy": dnn_acc, "processes": workers.world}
        for layer in self.layers:
            best = predictions[predictions.layer == layer].sort_values("top1_agreement").iloc[-1]
            nodes = int(sizes[(sizes.layer == layer) & (sizes.threshold == best.threshold)]["size"].iloc[0])
            best_text = f"{best.top1_agreement:.3f} (θ={best.threshold:g}, {nodes} nodes)"
            headline[f"{layer}: best top-1 agreement"] = best_text
        metrics: dict[str, Any] = {
            "dnn/test_acc": dnn_acc,
            "seconds": time.perf_counter() - start,
            "model_fingerprint": weights,
            "processes": workers.world,
        }
        if trained:
            metrics.update({k: v for k, v in trained.as_metrics().items() if k != "seconds"})
            headline["DNN training"] = "reused from cache" if trained.cached else f"{trained.seconds:.1f} s"
        for row in predictions.itertuples():
            metrics[f"library/{row.layer}/{row.threshold:g}/top1_agreement"] = row.top1_agreement
        if auroc is not None and len(auroc):
            for row in auroc.itertuples():
                metrics[f"auroc/{row.threshold_set}/eps={row.eps:g}"] = row.auroc
            # Read against chance (0.5) and against the other θ-sets: the best set per eps, and overall.
            for eps, rows in auroc.groupby("eps"):
                best = rows.loc[rows.auroc.idxmax()]
                headline[f"AUROC eps={eps:g}, best of {len(rows)} θ-sets"] = (
                    f"{best.auroc:.3f} ({best.threshold_set}; worst {rows.auroc.min():.3f}; chance 0.5)"
                )
            top = auroc.loc[auroc.auroc.idxmax()]
            metrics |= {"auroc/best": top.auroc, "auroc/best_eps": top.eps}
            metrics["auroc/best_threshold_set"] = top.threshold_set
        log_to_dashboards(ctx, {k: v for k, v in metrics.items() if isinstance(v, float)})
        rec.log_metrics(metrics)
        headline["time"] = f"{metrics['seconds']:.1f} s"
        rec.summary(f"explainlab library: {cfg.model.name} on {data.name}", headline)
        return metrics

    def _cpl_study(
        self,
        ctx: RunContext,
        model: torch.nn.Module,
        libraries: dict,
        sets: dict[str, dict[str, float]],
        test: dict[str, torch.Tensor],
        device: torch.device,
        workers: Workers,
        storage: tuple[list[str], dict[str, torch.dtype]],
    ) -> pd.DataFrame | None:
        """CPL of the first `cpl.images` test images, clean and under PGD at every eps (Eq. 5).
        storage: (factored taps, dtype per tap) as the test patterns were extracted.

        Attack batches are work units: each is attacked from its own seeded random start, so the
        images do not depend on how batches are spread over processes. Only rank 0 writes.
        """
        cfg = ctx.cfg
        factored, dtypes = storage
        if not cfg.get("attack") or not sets or len(self.layers) < 2:
            log.info("CPL study skipped (needs attack=pgd_linf, a threshold set and two layers)")
            return None
        attack = instantiate(cfg.attack)
        n = min(int(self.cpl["images"]), len(test["labels"]))
        data = ctx.datamodule.dataset("test")
        batch = attack.batch_size
        variants = {0.0: {layer: test[layer][:n] for layer in self.layers}}
        for e, eps in enumerate(attack.eps_list):
            adversary = attack.with_eps(eps)

            def attacked(unit: int, adversary=adversary, e=e) -> dict[str, torch.Tensor]:
                x, y = data[unit * batch : min((unit + 1) * batch, n)]
                torch.manual_seed(cfg.seed * 1_000_003 + e * 10_007 + unit)
                adv = adversary.perturb(model, x.to(device), y.to(device))
                return extract(
                    model, [(adv, y)], self.layers, device=device, dtype=dtypes, with_logits=False, factored=factored
                )

            parts = workers.map(-(-n // batch), attacked, desc=f"PGD eps={eps:g}")
            variants[eps] = {layer: torch.cat([p[layer] for p in parts]) for layer in self.layers}
            variants[eps].update({layer: FactoredHAPs(variants[eps][layer]) for layer in factored})
        pairs = [tuple(p) for p in self.cpl["pairs"]] if self.cpl["pairs"] else None
        # P of every (layer, θ) a set uses, per eps: one product with each layer's union of nodes.
        scores: dict[float, dict[tuple[str, float], torch.Tensor]] = {}
        for eps, haps in variants.items():
            scores[eps] = {}
            for layer in self.layers:
                used = {(layer, t): libraries[(layer, t)] for t in sorted({s[layer] for s in sets.values()})}
                scores[eps].update(
                    predict_scores_many(used, haps[layer], self.cpl["top_k"], map_units=workers.mapper())
                )
        in_order = {name: {layer: chosen[layer] for layer in self.layers} for name, chosen in sets.items()}
        cpl_table, auroc = cpl_tables(scores, in_order, pairs=pairs, softmax=self.cpl["softmax"])
        if not workers.is_main:
            return None
        rec = ctx.recorder
        rec.save_table("cpl", cpl_table)
        rec.save_table("auroc", auroc)
        rec.save_figure("cpl_histograms", library_figures.cpl_histograms(cpl_table))
        rec.save_figure("auroc", library_figures.auroc(auroc))
        return auroc


def _analyse_on_rank(fabric: Any, study: LibraryStudy, cfg: DictConfig, trained: TrainingResult | None) -> dict:
    return study._analyse(RunContext(cfg), trained, fabric.device)
