"""Dashboards as wandb's Lightning integration and lightning-hydra-template use them: one run per job.

- `open_loggers`: the configured logger (TensorBoard, wandb, ...) plus the CSV logger. A wandb run is
  named after the task and the overrides that vary in the sweep, grouped by the sweep folder
  (`<task>/multiruns/<time>`) and typed by the method, unless the logger config sets these itself.
  The resolved config is logged as hyper-parameters (wandb config, TensorBoard hparams.yaml).
- `publish_headline`: the run's metrics.json numbers go into the wandb summary and TensorBoard's
  HPARAMS tab (beside the config), at the end of a study.
- `finish_dashboards`: ends the job's wandb run, so the next job of a sweep opens its own
  (otherwise Lightning reuses the live run: "There is a wandb run already in progress").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, Logger
from omegaconf import DictConfig, OmegaConf

from explainlab.results.collect import flat_metrics, parse_overrides, swept_keys

_NAME_LIMIT = 128  # wandb shows long names badly; the overrides are in the config anyway


def run_identity(cfg: DictConfig) -> dict[str, str | None]:
    """{'name', 'group', 'job_type'} of this job's dashboard run.

    name: `task_name` plus the overrides that vary in the sweep (in a single run: all command-line
    overrides but `experiment=`); group: the sweep folder relative to paths.log_dir (None in a single
    run); job_type: the chosen method.
    """
    task = str(cfg.get("task_name") or "explainlab")
    if not HydraConfig.initialized():
        return {"name": task, "group": None, "job_type": None}
    hydra_cfg = HydraConfig.get()
    overrides = parse_overrides(list(hydra_cfg.overrides.task))
    job_type = hydra_cfg.runtime.choices.get("method")
    group = None
    shown = {k: v for k, v in overrides.items() if k != "experiment"}
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sweep_dir = Path(hydra_cfg.sweep.dir).resolve()
        try:
            group = sweep_dir.relative_to(Path(cfg.paths.log_dir).resolve()).as_posix()
        except ValueError:
            group = sweep_dir.name
        swept = swept_keys(sweep_dir)
        if swept is not None:
            shown = {k: v for k, v in overrides.items() if k in swept}
    name = " ".join([task, *(f"{k}={v}" for k, v in shown.items())])
    return {"name": name[:_NAME_LIMIT], "group": group, "job_type": job_type}


def hyperparameters(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as a nested dict (lists and None kept; each logger flattens it its own way)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def open_loggers(cfg: DictConfig, output_dir: str | Path) -> list[Logger]:
    """The configured logger (if any) plus a CSV logger under <output_dir>/csv, with the config logged."""
    loggers: list[Logger] = []
    if cfg.get("logger"):
        extra = {}
        if str(cfg.logger.get("_target_", "")).endswith("WandbLogger"):
            identity = run_identity(cfg)
            extra = {k: v for k, v in identity.items() if cfg.logger.get(k) is None and v is not None}
        loggers.append(instantiate(cfg.logger, **extra))
    if not any(isinstance(lg, CSVLogger) for lg in loggers):
        loggers.append(CSVLogger(save_dir=str(output_dir), name="csv", version=""))
    params = hyperparameters(cfg)
    for logger in loggers:
        # The CSV logger is skipped: config.yaml holds the config, and after a spawned DDP fit a CSV
        # writer opened in this process would replace the epoch log the workers wrote.
        if not isinstance(logger, CSVLogger):
            logger.log_hyperparams(params)
            logger.save()
    return loggers


def publish_headline(loggers: Sequence[Logger], metrics: Mapping[str, Any]) -> None:
    """Numbers of `metrics` (metrics.json) into the wandb run summary and TensorBoard's HPARAMS tab."""
    numbers = flat_metrics(metrics, numbers_only=True)
    for logger in loggers:
        kind = type(logger).__name__
        if kind == "WandbLogger":
            summary = getattr(logger.experiment, "summary", None)
            if summary is not None:  # None on DDP ranks > 0
                summary.update(numbers)
        elif kind == "TensorBoardLogger" and numbers:
            logger.log_hyperparams(logger.hparams, metrics={f"headline/{k}": v for k, v in numbers.items()})
            logger.save()
            logger.experiment.flush()


def finish_dashboards(failed: bool = False) -> None:
    """End this process's wandb run (if any), so that the next job of a sweep starts its own."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1 if failed else 0)
