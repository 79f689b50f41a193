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
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm.auto import tqdm

from explainlab.errors import ConfigValueError, ExplainlabError, check_choice, check_int
from explainlab.methods.chirality import (
    INITS,
    conv_weights,
    fingerprint_report,
    profile_table,
    reinitialised,
    residual_tables,
)
from explainlab.models.build import MODEL_NAMES
from explainlab.models.factories import build_trained, build_untrained
from explainlab.results import chirality_figures
from explainlab.runner.context import RunContext
from explainlab.runner.training import ensure_trained, log_to_dashboards

log = logging.getLogger(__name__)

TRAINED_SOURCES = ("torchvision", "akamaster", "run", "none")


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
        init_models: Sequence[str] = ("resnet20",),
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
        return profile_table(net, conv, device=self.device, **keys)

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
                    facts["run_model"] = {k: trained.as_metrics().get(k) for k in ("cache_path", "cached", "test/acc")}
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
        """E(L) per layer and E(M) per model (`methods.chirality.residual_tables`)."""
        return residual_tables(table)

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
            **{f"E(M) {row.model}": _e_m_line(row) for row in total.itertuples()},
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


def _e_m_line(row: Any) -> str:
    """E(M) beside what the untrained seeds alone differ by (0 would mean training left S unchanged)."""
    spread = "one seed" if pd.isna(row.untrained_spread) else f"untrained seeds differ by {row.untrained_spread:.3f}"
    return f"{row.E_M:.3f} over {row.layers} layers ({spread}; 0 = training left S unchanged)"
