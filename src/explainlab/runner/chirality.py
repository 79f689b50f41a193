"""`method=chirality`: feature chirality of the conv kernels of several models (paper 000).

For every model: S per flippable conv layer, trained (when weights are available) and untrained
(default initialisation, several seeds); for `init_models`, the other initialisations (Fig. 4);
the commutative residual E(L) and E(M); stage trends; the no-flip ablation; the fingerprint test.

Tables (results/): chirality.csv, residual.csv, residual_total.csv, fingerprint.csv, skipped.csv.
Figures (figures/): fig3_trained_vs_untrained, fig4_initialisations, fig5_stage_trends,
fig6_noflip, fingerprint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm.auto import tqdm

from explainlab.errors import ConfigValueError, ExplainlabError, check_choice, check_int
from explainlab.methods.chirality import (
    ChiralityProfile,
    analysed_stage,
    expected_similarity,
    fingerprint_report,
    flippable_convs,
    layer_stages,
    model_family,
    stretched_positions,
)
from explainlab.models.build import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODEL_NAMES,
    TORCHVISION_MODELS,
    build_model,
    pretrained_cifar_resnet,
)
from explainlab.models.cifar_resnet import CIFAR_RESNET_DEPTHS
from explainlab.results import chirality_figures
from explainlab.runner.context import RunContext
from explainlab.runner.train import ensure_trained, log_to_dashboards

log = logging.getLogger(__name__)

TRAINED_SOURCES = ("torchvision", "akamaster", "run", "none")

# Initialisations of Fig. 4, applied to the conv weights only (S reads nothing else). "default" is
# the architecture's own initialisation, i.e. the model as its constructor leaves it.
INITS: dict[str, Callable[[torch.Tensor, torch.Generator], Any]] = {
    "kaiming_normal": lambda w, g: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", generator=g),
    "xavier_normal": lambda w, g: nn.init.xavier_normal_(w, generator=g),
    "normal": lambda w, g: nn.init.normal_(w, 0.0, 0.01, generator=g),
    "kaiming_uniform": lambda w, g: nn.init.kaiming_uniform_(w, a=5**0.5, generator=g),
}


def build_untrained(name: str) -> nn.Module:
    """`name` of the model group with its constructor's initialisation (seed the RNG first)."""
    if name in TORCHVISION_MODELS:
        return build_model(name, num_classes=1000, in_channels=3, image_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    if name in CIFAR_RESNET_DEPTHS:
        return build_model(name, num_classes=10, in_channels=3, image_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return build_model(name, num_classes=10, in_channels=1, image_size=28)


def build_trained(name: str, source: str, paths: Mapping[str, Any]) -> nn.Module:
    """Trained weights of `name` from `source` ('torchvision': weights=DEFAULT, downloaded into the
    torch hub cache; 'akamaster': the published CIFAR ResNets). Raises ExplainlabError with what to
    download and where when the weights cannot be had."""
    if source == "torchvision":
        import torchvision

        try:
            return build_model(name, num_classes=1000, in_channels=3, image_size=224, weights="DEFAULT",
                               mean=IMAGENET_MEAN, std=IMAGENET_STD)  # fmt: skip
        except (OSError, RuntimeError) as err:  # URLError is an OSError
            url = torchvision.models.get_model_weights(name).DEFAULT.url
            hub = f"{torch.hub.get_dir()}/checkpoints/"
            raise ExplainlabError(f"no torchvision weights for {name} offline: put {url} into {hub} ({err})") from err
    if source == "akamaster":
        return pretrained_cifar_resnet(name, models_dir=paths.get("models_dir"), cache_dir=paths["cache_dir"])
    raise ConfigValueError("method.models[].trained", source, f"one of {TRAINED_SOURCES}")


def conv_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: conv.weight.detach() for name, conv in flippable_convs(model).items()}


def reinitialised(weights: Mapping[str, torch.Tensor], init: str, seed: int) -> dict[str, torch.Tensor]:
    """Fresh conv weights of the same shapes drawn by `init` from one seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, weight in weights.items():
        fresh = torch.empty(weight.shape, dtype=torch.float32)
        INITS[init](fresh, generator)
        out[name] = fresh
    return out


class ChiralityStudy:
    """Trained vs untrained S profiles of `models`, initialisations, stage trends, no-flip ablation.

    models: [{name, trained}], trained in TRAINED_SOURCES: 'torchvision' (weights=DEFAULT, needs the
      download or the file in the torch hub cache), 'akamaster' (CIFAR ResNets), 'run' (the run's
      own `model`, trained on its `dataset` by its `recipe`, or reused from the checkpoint cache;
      its untrained profile at `seed` is then the exact initialisation training started from),
      'none' (untrained only).
    seeds: seeds of the untrained profiles. init_models / inits: Fig. 4's models and
      initialisations ('default' = the constructor's; others in INITS).
    device: 'auto' (CUDA when available), 'cpu' or 'cuda'.
    deviation_threshold: |mean log(S / E_untrained)| above which the fingerprint calls a model trained.
    """

    def __init__(
        self,
        models: Sequence[Mapping[str, Any]],
        seeds: Sequence[int] = (0, 1, 2),
        init_models: Sequence[str] = (),
        inits: Sequence[str] = ("default", "kaiming_normal", "xavier_normal", "normal"),
        device: str = "auto",
        fingerprint: bool = True,
        deviation_threshold: float = 0.1,
        progress: bool = True,
    ) -> None:
        self.models = [dict(OmegaConf.to_container(m) if isinstance(m, DictConfig) else m) for m in models]
        if not self.models:
            raise ConfigValueError("method.models", [], "at least one {name, trained} entry")
        for i, entry in enumerate(self.models):
            if set(entry) - {"name", "trained"} or "name" not in entry:
                raise ConfigValueError(f"method.models[{i}]", entry, "a mapping with keys name and trained")
            entry.setdefault("trained", "none")
            check_choice(f"method.models[{i}].trained", entry["trained"], TRAINED_SOURCES)
            if entry["trained"] != "run":
                check_choice(f"method.models[{i}].name", entry["name"], MODEL_NAMES)
        for name in init_models:
            check_choice("method.init_models", name, MODEL_NAMES)
        for init in inits:
            check_choice("method.inits", init, ("default", *INITS))
        if not seeds:
            raise ConfigValueError("method.seeds", list(seeds), "at least one seed")
        for seed in seeds:
            check_int("method.seeds", seed, minimum=0)
        check_choice("method.device", device, ("auto", "cpu", "cuda"))
        self.seeds, self.init_models, self.inits = [int(s) for s in seeds], list(init_models), list(inits)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.fingerprint, self.deviation_threshold, self.progress = fingerprint, deviation_threshold, progress

    def _rows(self, net: nn.Module, conv: Mapping[str, torch.Tensor], **keys: Any) -> pd.DataFrame:
        profile = ChiralityProfile(device=self.device).fit_weights(conv)
        table = profile.to_frame()
        family, stages = model_family(net), layer_stages(net)
        table["stage"] = table["layer"].map(stages)
        table["x"] = stretched_positions(table["stage"].tolist())
        table["analysed"] = [analysed_stage(family, s) for s in table["stage"]]
        table["expected_untrained"] = [
            expected_similarity(k, *(int(v) for v in shape.split("x")))
            for k, shape in zip(table["kernels"], table["kernel_shape"], strict=True)
        ]
        for key, value in reversed({"family": family, **keys}.items()):
            table.insert(0, key, value)
        return table

    def profiles(self, cfg: DictConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
        """All S profiles as one tidy table, the skipped (model, reason) table, and run facts."""
        tables, skipped, facts = [], [], {}
        for i, entry in enumerate(self.models):
            if entry["trained"] == "run" and entry["name"] != cfg.model.name:
                raise ConfigValueError(
                    f"method.models[{i}].name", entry["name"], f"the run's model {cfg.model.name!r} (trained: run)"
                )
        plan = [(e["name"], e["trained"]) for e in self.models]
        names = list(dict.fromkeys([n for n, _ in plan] + self.init_models))
        for name, source in tqdm(plan, desc="trained models", disable=not self.progress, leave=False):
            if source == "none":
                continue
            try:
                if source == "run":
                    ctx = RunContext(cfg)
                    trained = ensure_trained(ctx)
                    model = ctx.model
                    facts["run_model"] = {k: trained.get(k) for k in ("cache_path", "cached", "test/acc")}
                else:
                    model = build_trained(name, source, cfg.paths)
            except ExplainlabError as err:
                log.warning("skipping trained %s: %s", name, err)
                skipped.append({"model": name, "weights": "trained", "reason": str(err)})
                continue
            tables.append(self._rows(model, conv_weights(model), model=name, weights="trained", init=source, seed=-1))
        run_names = {cfg.model.name for _, s in plan if s == "run"}
        for name in tqdm(names, desc="untrained models", disable=not self.progress, leave=False):
            inits = self.inits if name in self.init_models else ["default"]
            for seed in self.seeds:
                torch.manual_seed(seed)
                model = instantiate(cfg.model) if name in run_names else build_untrained(name)
                base = conv_weights(model)
                for init in inits:
                    weights = base if init == "default" else reinitialised(base, init, seed)
                    tables.append(self._rows(model, weights, model=name, weights="untrained", init=init, seed=seed))
        return (
            pd.concat(tables, ignore_index=True),
            pd.DataFrame(skipped, columns=["model", "weights", "reason"]),
            facts,
        )

    @staticmethod
    def residuals(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """E(L) = |mean_seed S_untrained(L) − S_trained(L)| (default init) per layer, and E(M) summed
        over the analysed layers, for every model that has both profiles."""
        keys = ["model", "layer", "position", "stage", "analysed"]
        untrained = table[(table["weights"] == "untrained") & (table["init"] == "default")]
        untrained = untrained.groupby(keys, sort=False)["similarity"].agg(["mean", "std"]).reset_index()
        untrained = untrained.rename(columns={"mean": "similarity_untrained", "std": "similarity_untrained_std"})
        trained = table[table["weights"] == "trained"][[*keys, "similarity"]]
        merged = untrained.merge(trained.rename(columns={"similarity": "similarity_trained"}), on=keys)
        merged["E"] = (merged["similarity_untrained"] - merged["similarity_trained"]).abs()
        total = (
            merged[merged["analysed"]]
            .groupby("model", sort=False)
            .agg(E_M=("E", "sum"), layers=("E", "size"))
            .reset_index()
        )
        return merged, total

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        start = time.perf_counter()
        ctx = RunContext(cfg)
        rec = ctx.recorder
        rec.save_config(cfg)
        table, skipped, facts = self.profiles(cfg)
        residual, total = self.residuals(table)
        rec.save_table("chirality", table)
        rec.save_table("residual", residual)
        rec.save_table("residual_total", total)
        rec.save_table("skipped", skipped)
        rec.save_figure("fig3_trained_vs_untrained", chirality_figures.trained_vs_untrained(table))
        rec.save_figure("fig4_initialisations", chirality_figures.initialisations(table))
        rec.save_figure("fig5_stage_trends", chirality_figures.stage_trends(table))
        rec.save_figure("fig6_noflip", chirality_figures.noflip(table))
        metrics: dict[str, Any] = {f"E_M/{row.model}": float(row.E_M) for row in total.itertuples()}
        if self.fingerprint:
            report, scores = fingerprint_report(table, deviation_threshold=self.deviation_threshold)
            rec.save_table("fingerprint", report)
            rec.save_figure("fingerprint", chirality_figures.fingerprint(report, self.deviation_threshold))
            metrics |= {f"fingerprint/{k}": v for k, v in scores.items()}
        metrics |= {"seconds": time.perf_counter() - start, "profiles": int(table.groupby(
            ["model", "weights", "init", "seed"]).ngroups)}  # fmt: skip
        log_to_dashboards(ctx, {k: v for k, v in metrics.items() if isinstance(v, float)})
        rec.log_metrics(metrics | {"skipped": skipped.to_dict("records"), **facts})
        headline: dict[str, Any] = {
            "models": ", ".join(dict.fromkeys(table["model"])),
            "profiles": metrics["profiles"],
            **{f"E(M) {row.model}": float(row.E_M) for row in total.itertuples()},
        }
        if self.fingerprint:
            labels = {"trained_by_deviation": "trained? (deviation rule)", "trained_by_1nn": "trained? (1-NN, LOMO)",
                      "family_by_1nn": "family (1-NN, LOMO)"}  # fmt: skip
            for key, label in labels.items():
                value = metrics.get(f"fingerprint/accuracy/{key}")
                headline[f"fingerprint accuracy: {label}"] = "n/a" if value is None else value
        if len(skipped):
            headline["skipped (no weights)"] = ", ".join(f"{r.model} {r.weights}" for r in skipped.itertuples())
        headline["time"] = f"{metrics['seconds']:.1f} s"
        rec.summary(f"explainlab chirality: {len(table['model'].unique())} models", headline)
        return metrics
