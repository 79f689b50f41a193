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

from explainlab.attacks.pgd import check_batch_statistics
from explainlab.errors import ConfigValueError, check_choice, check_int
from explainlab.methods.library import FactoredHAPs, LibraryNetwork, cpl_tables
from explainlab.methods.library.analysis import best_agreement, best_threshold_sets, cpl_scores, library_tables
from explainlab.methods.library.fitting import fit_libraries, threshold_sets, thresholds_per_layer
from explainlab.models.layers import resolve_layers
from explainlab.models.loading import fingerprint
from explainlab.results import library_figures
from explainlab.runner.activations import FeatureCache, cached_split_features, extract, plan_storage
from explainlab.runner.attacked import AttackCache, attacked_images
from explainlab.runner.checkpoint_cache import CheckpointCache
from explainlab.runner.context import RunContext
from explainlab.runner.distributed import Workers, run_split
from explainlab.runner.training import TrainingResult, log_to_dashboards, train_unless_given

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "float64": torch.float64}


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
        self.thresholds = thresholds_per_layer(common, layer_thresholds, self.layers)
        for key, value in {"top_k": top_k, "block_size": block_size}.items():
            check_int(f"method.{key}", value, minimum=1)
        check_choice("method.hap_dtype", hap_dtype, _DTYPES)
        self.top_k, self.hap_dtype, self.block_size, self.progress = top_k, _DTYPES[hap_dtype], block_size, progress
        self.confusion = {"variant": "paper", "thresholds": [0.65, 0.75], **(dict(confusion or {}))}
        check_choice("method.confusion.variant", self.confusion["variant"], ("paper", "original"))
        self.cpl = {"top_k": 20, "softmax": True, "pairs": None, "threshold_sets": None, "images": 200}
        self.cpl.update(dict(cpl or {}))
        for key in ("images", "top_k"):
            check_int(f"method.cpl.{key}", self.cpl[key], minimum=1)
        pairs = [[p] if isinstance(p, str) else list(p) for p in self.cpl["pairs"] or []]
        if any(len(p) != 2 or not set(p) <= set(self.layers) for p in pairs):
            raise ConfigValueError(
                "method.cpl.pairs", pairs, f"pairs [a, b] of layers of method.layers ({', '.join(self.layers)}), "
                "or null for all pairs",
            )  # fmt: skip
        self.save_libraries, self.factored_taps = save_libraries, factored_taps

    def threshold_sets(self) -> dict[str, dict[str, float]]:
        common = sorted(set.intersection(*(set(v) for v in self.thresholds.values())))
        return threshold_sets(self.cpl["threshold_sets"], self.layers, common, key="method.cpl.threshold_sets")

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        ctx = RunContext(cfg)
        resolve_layers(ctx.model, self.layers, key="method.layers")
        trained = train_unless_given(ctx)  # DDP ranks > 0 of the subprocess launcher come on to help below
        return run_split(cfg.trainer, self._analyse, ctx, trained)

    def _analyse(self, device: torch.device, ctx: RunContext, trained: TrainingResult | None) -> dict[str, Any]:
        """Everything after training; on several DDP processes when torch.distributed is initialised
        (each rank computes its share of batches and blocks; rank 0 builds libraries and writes)."""
        cfg, workers, start = ctx.cfg, Workers(progress=self.progress), time.perf_counter()
        model, data = ctx.model, ctx.datamodule
        if trained is not None and workers.distributed:
            workers.barrier()  # rank 0 has written the trained weights to the cache
            model.net.load_state_dict(CheckpointCache(cfg.paths.cache_dir).get(ctx.training_spec())["state_dict"])
        model.eval().to(device)
        spec = {"model": fingerprint(model), "data": ctx.data_spec(drop=("batch_size",))}
        example = data.dataset("test")[0:1][0].to(device)
        factored, dtypes = plan_storage(model, self.layers, example, self.hap_dtype, factor=self.factored_taps)
        if factored:
            log.info("taps held through their inputs (exact, fewer dimensions): %s", ", ".join(factored))
        feats = {}
        for split in ("train", "test"):
            feats[split] = cached_split_features(
                model, data.dataset(split), self.layers, spec={**spec, "split": split},
                cache=FeatureCache(cfg.paths.cache_dir), batch_size=data.eval_batch_size, device=device, dtype=dtypes,
                map_units=workers.mapper(f"activations ({split})"), write=workers.is_main, factored=factored,
            )  # fmt: skip
            feats[split].update({layer: FactoredHAPs(feats[split][layer]) for layer in factored})
        workers.barrier()
        rec = ctx.recorder if workers.is_main else None
        if rec is not None:
            rec.save_config(cfg)
        sets = self.threshold_sets()
        needed = {layer: sorted({*self.thresholds[layer], *(s[layer] for s in sets.values())}) for layer in self.layers}
        libraries = fit_libraries(
            feats["train"], needed, feats["train"]["logits"], block_size=self.block_size, device=device,
            progress=self.progress, once=workers.on_main,
            map_units=lambda layer: workers.mapper(f"Hebbian links ({layer})"),
        )  # fmt: skip
        if self.save_libraries and rec is not None:
            for (layer, t), lib in libraries.items():
                lib.save(ctx.output_dir / "libraries" / f"{layer}_{t:g}.pt", layer=layer, model_hash=spec["model"])
        test_pred, test_labels = feats["test"]["logits"].argmax(1), feats["test"]["labels"]
        studied = {layer: [t for t in needed[layer] if t in self.thresholds[layer]] for layer in self.layers}
        sizes, predictions, confusion = library_tables(
            libraries, studied, feats["test"], test_pred, test_labels, top_k=self.top_k,
            variant=self.confusion["variant"], map_units=lambda layer: workers.mapper(f"predictions ({layer})"),
        )  # fmt: skip
        auroc = self._cpl_study(ctx, model, libraries, sets, feats["test"], device, workers, (factored, dtypes), spec)
        if rec is None:
            return {}
        self._record(ctx, sizes, predictions, confusion)
        dnn_acc = float((test_pred == test_labels).float().mean())
        return self._summarise(ctx, predictions, sizes, auroc, trained, dnn_acc, workers.world, start, spec["model"])

    def _record(self, ctx: RunContext, sizes: pd.DataFrame, predictions: pd.DataFrame,
                confusion: dict[tuple[str, float], torch.Tensor]) -> None:  # fmt: skip
        """Tables and figures of the libraries (rank 0)."""
        rec, n_classes = ctx.recorder, ctx.cfg.model.num_classes
        classes = list(ctx.datamodule.classes) or [str(i) for i in range(n_classes)]
        plotted, by_threshold = self.confusion["thresholds"], {}
        for (layer, t), ci in confusion.items():
            table = pd.DataFrame(ci.numpy(), index=classes, columns=classes).rename_axis("true").reset_index()
            rec.save_table(f"confusion/{layer}_{t:g}", table)
            if plotted is None or any(abs(t - p) < 1e-12 for p in plotted):
                by_threshold.setdefault(t, {})[layer] = ci
        rec.save_table("library_sizes", sizes)
        rec.save_table("predictions", predictions)
        rec.save_figure("library_sizes", library_figures.sizes(sizes))
        rec.save_figure("agreement", library_figures.agreement(predictions))
        for t, by_layer in by_threshold.items():
            rec.save_figure(f"confusion_{t:g}", library_figures.confusion(by_layer, classes, t))

    def _summarise(self, ctx: RunContext, predictions: pd.DataFrame, sizes: pd.DataFrame, auroc: pd.DataFrame | None,
                   trained: TrainingResult | None, dnn_acc: float, world: int, start: float,
                   weights: str) -> dict[str, Any]:  # fmt: skip
        """metrics.json, dashboards and the printed summary, each number beside what to read it against."""
        cfg, rec = ctx.cfg, ctx.recorder
        headline: dict[str, Any] = {"DNN test accuracy": dnn_acc, "processes": world}
        for row in best_agreement(predictions, sizes).itertuples():
            best = f"{row.top1_agreement:.3f} (θ={row.threshold:g}, {row.size} nodes)"
            headline[f"{row.layer}: best top-1 agreement"] = best
        metrics: dict[str, Any] = {"dnn/test_acc": dnn_acc, "seconds": time.perf_counter() - start,
                                   "model_fingerprint": weights, "processes": world}  # fmt: skip
        if trained:
            metrics.update({k: v for k, v in trained.as_metrics().items() if k != "seconds"})
            headline["DNN training"] = "reused from cache" if trained.cached else f"{trained.seconds:.1f} s"
        for row in predictions.itertuples():
            metrics[f"library/{row.layer}/{row.threshold:g}/top1_agreement"] = row.top1_agreement
        if auroc is not None and len(auroc):
            for row in auroc.itertuples():
                metrics[f"auroc/{row.threshold_set}/eps={row.eps:g}"] = row.auroc
            for row in best_threshold_sets(auroc).itertuples():
                headline[f"AUROC eps={row.eps:g}, best of {row.n_sets} θ-sets"] = (
                    f"{row.auroc:.3f} ({row.threshold_set}; worst {row.worst:.3f}; chance 0.5)"
                )
            top = auroc.loc[auroc.auroc.idxmax()]
            metrics |= {"auroc/best": top.auroc, "auroc/best_eps": top.eps}
            metrics["auroc/best_threshold_set"] = top.threshold_set
        log_to_dashboards(ctx, {k: v for k, v in metrics.items() if isinstance(v, float)})
        rec.log_metrics(metrics)
        headline["time"] = f"{metrics['seconds']:.1f} s"
        rec.summary(f"explainlab library: {cfg.model.name} on {ctx.datamodule.name}", headline)
        return metrics

    def _cpl_study(self, ctx: RunContext, model: torch.nn.Module, libraries: dict[tuple[str, float], LibraryNetwork],
                   sets: dict[str, dict[str, float]], test: dict[str, torch.Tensor], device: torch.device,
                   workers: Workers, storage: tuple[list[str], dict[str, torch.dtype]],
                   spec: dict[str, Any]) -> pd.DataFrame | None:  # fmt: skip
        """CPL of the first `cpl.images` test images, clean and under PGD at every eps (Eq. 5).
        storage: (factored taps, dtype per tap) as the test patterns were extracted. The attacked
        images are the detection study's (`runner.attacked`, shared cache); only rank 0 writes."""
        cfg, (factored, dtypes) = ctx.cfg, storage
        if not cfg.get("attack") or not sets or len(self.layers) < 2:
            log.info("CPL study skipped (needs attack=pgd_linf, a threshold set and two layers)")
            return None
        attack = instantiate(cfg.attack)
        n = min(int(self.cpl["images"]), len(test["labels"]))
        check_batch_statistics(attack, n)
        x, y = ctx.datamodule.dataset("test")[0:n]
        batch, cache = attack.batch_size, AttackCache(cfg.paths.cache_dir)
        variants = {0.0: {layer: test[layer][:n] for layer in self.layers}}
        for eps in attack.eps_list:
            adv, _ = attacked_images(model, attack.with_eps(eps), x, y, seed=cfg.seed, device=device, cache=cache,
                                     spec={**spec, "images": f"test[0:{n}]"}, workers=workers)  # fmt: skip

            def haps(unit: int, adv: torch.Tensor = adv) -> dict[str, torch.Tensor]:  # the attack's batches
                part = [(adv[unit * batch : (unit + 1) * batch], y[unit * batch : (unit + 1) * batch])]
                kwargs = {"device": device, "dtype": dtypes, "factored": factored, "with_logits": False}
                return extract(model, part, self.layers, **kwargs)

            parts = workers.map(-(-n // batch), haps)
            variants[eps] = {layer: torch.cat([p[layer] for p in parts]) for layer in self.layers}
            variants[eps].update({layer: FactoredHAPs(variants[eps][layer]) for layer in factored})
        pairs = [tuple(p) for p in self.cpl["pairs"]] if self.cpl["pairs"] else None
        scores = cpl_scores(libraries, sets, variants, self.cpl["top_k"], map_units=workers.mapper())
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
