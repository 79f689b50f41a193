"""The training service every study shares: train the run's classifier under its recipe (or another
model, e.g. a distillation student), cache the result by spec, resume an interrupted training, keep
snapshots after chosen epochs, and write the training tables (`method=train` is one user of it)."""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import pandas as pd
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from rich.console import Console
from torch import nn

from explainlab.errors import CheckpointError, NonFiniteModelError
from explainlab.models.loading import fingerprint
from explainlab.results import figures
from explainlab.runner.activations import eval_device, score
from explainlab.runner.checkpoint_cache import CheckpointCache, cache_key, is_rank_zero_process
from explainlab.runner.classifier import ClassifierModule
from explainlab.runner.context import RunContext

log = logging.getLogger(__name__)


def build_module(ctx: RunContext) -> ClassifierModule:
    recipe = ctx.cfg.recipe
    scheduler = instantiate(recipe.scheduler) if recipe.get("scheduler") else None
    return ClassifierModule(
        ctx.model,
        instantiate(recipe.optimizer),
        scheduler,
        num_classes=ctx.cfg.model.num_classes,
        crop_padding=recipe.augment.crop_padding,
        hflip=recipe.augment.hflip,
        channels_last=ctx.cfg.model.get("channels_last", False),
    )


def epoch_table(ctx: RunContext) -> pd.DataFrame:
    """Per-epoch means of the logged metrics (tidy: one row per epoch), from the CSV logger."""
    csv = ctx.output_dir / "csv" / "metrics.csv"
    if not csv.is_file():
        return pd.DataFrame()
    raw = pd.read_csv(csv)
    cols = [c for c in raw.columns if c.endswith("_epoch") or c in ("val/loss", "val/acc", "train/acc")]
    if "epoch" not in raw or not cols:
        return pd.DataFrame()
    table = raw.dropna(how="all", subset=cols).groupby("epoch")[cols].mean().reset_index()
    return table.rename(columns=lambda c: c.removesuffix("_epoch"))


class EpochSnapshots(pl.Callback):
    """Stores the weights of `model` at the end of the listed (1-based) epochs as checkpoint-cache
    entries under `snapshot_spec(spec, epoch)` (rank zero only; weights-only, key-checked on load)."""

    def __init__(self, cache: CheckpointCache, spec: dict[str, Any], epochs: Sequence[int], model: nn.Module) -> None:
        self.cache, self.spec, self.epochs, self.model = cache, spec, set(epochs), model

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch in self.epochs and trainer.is_global_zero:
            self.cache.put(snapshot_spec(self.spec, epoch), self.model.net.state_dict(), {"epoch": epoch})


class EpochLog(pl.Callback):
    """One log line per finished training epoch (its time, the epoch's metrics, the time left), for
    runs whose progress bar nobody sees live: batch jobs (SLURM, nohup, a pipe) and progress=false.
    The line also goes to the run's log file."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.seconds.append(time.perf_counter() - self._start)
        done, total = trainer.current_epoch + 1, trainer.max_epochs
        steps = trainer.num_training_batches
        shown = {k.removesuffix("_epoch"): float(v) for k, v in trainer.callback_metrics.items()
                 if k.endswith("_epoch") or k in ("train/acc", "val/loss", "val/acc")}  # fmt: skip
        numbers = ", ".join(f"{k} {v:.4g}" for k, v in sorted(shown.items()))
        # The median epoch: one slow epoch (warm-up, a busy machine) does not inflate the estimate.
        left = statistics.median(self.seconds) * (total - done) if total and total > 0 else None
        per_step = f" ({self.seconds[-1] / steps:.2f} s/step)" if isinstance(steps, int) and steps > 0 else ""
        log.info("training: epoch %d/%s in %s%s%s%s", done, total if total and total > 0 else "?",
                 _duration(self.seconds[-1]), per_step, f"; {numbers}" if numbers else "",
                 f"; about {_duration(left)} left" if left else "")  # fmt: skip


def bar_watched(cfg: Any) -> bool:
    """Whether someone watches training's progress bar live: `progress` and the trainer's bar are on and
    stdout, where Lightning's rich bar draws, is a terminal or a notebook (rich's own detection, as the
    end-of-run summary uses it)."""
    if not (cfg.get("progress", True) and cfg.get("trainer", {}).get("enable_progress_bar", True)):
        return False
    console = Console()
    return console.is_terminal or console.is_jupyter


def _duration(seconds: float) -> str:
    """'2 h 05 min', '6 min 31 s' or '4.2 s'."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.1f} s"


def snapshot_spec(spec: dict[str, Any], epoch: int) -> dict[str, Any]:
    """Cache spec of the weights after `epoch` epochs of the training described by `spec`."""
    return {**spec, "snapshot_epoch": int(epoch)}


@dataclass
class TrainingResult:
    """What `ensure_trained` did: the checkpoint-cache key and file (None on DDP ranks > 0, which
    leave scoring and writing to rank 0), whether the weights came from the cache, the seconds
    training took, whether this process is rank zero (the one that writes), and the test metrics
    ({'test/acc', 'test/loss'}; empty on ranks > 0) and the trained weights' fingerprint (rank zero)."""

    cache_key: str
    cache_path: str | None
    cached: bool
    seconds: float
    rank_zero: bool = True
    metrics: dict[str, float] = field(default_factory=dict)
    model_fingerprint: str | None = None

    def as_metrics(self) -> dict[str, Any]:
        """The run's metrics.json entries: cache_key, cache_path, cached, seconds, test/acc, test/loss,
        model_fingerprint (rank zero)."""
        fingerprinted = {"model_fingerprint": self.model_fingerprint} if self.model_fingerprint else {}
        return {"cache_key": self.cache_key, "cache_path": self.cache_path, "cached": self.cached,
                "seconds": self.seconds, **self.metrics, **fingerprinted}  # fmt: skip


def ensure_trained(
    ctx: RunContext,
    *,
    reuse: bool = True,
    resume: bool = True,
    model: nn.Module | None = None,
    module: Callable[[], pl.LightningModule] | None = None,
    spec: dict[str, Any] | None = None,
    snapshot_epochs: Sequence[int] = (),
) -> TrainingResult:
    """Train `ctx.model` under the recipe, or load the cached result of the same spec.

    model / module / spec: train another model (e.g. a distillation student) through the LightningModule
    `module()` builds, cached under `spec` (default: ctx.model, a ClassifierModule, ctx.training_spec()).
    snapshot_epochs: also keep the weights after these epochs (read them with `load_snapshot`); when
    one is missing from the cache, the model is trained again from the start to make it.
    Returns a `TrainingResult`. A second process asking for the same spec waits for the first one (a
    lock per cache key) and then reuses its entry.
    """
    spec = spec or ctx.training_spec()
    cache = CheckpointCache(ctx.cfg.paths.cache_dir)
    with cache.lock(spec) if is_rank_zero_process() else nullcontext():
        pl.seed_everything(ctx.cfg.seed, workers=True)
        result = _train_or_reuse(ctx, cache, spec, reuse, resume, model, module, snapshot_epochs)
    if result.rank_zero:
        result.model_fingerprint = fingerprint(model or ctx.model)
    return result


def _train_or_reuse(
    ctx: RunContext,
    cache: CheckpointCache,
    spec: dict[str, Any],
    reuse: bool,
    resume: bool,
    model: nn.Module | None,
    module: Callable[[], pl.LightningModule] | None,
    snapshot_epochs: Sequence[int],
) -> TrainingResult:
    key = cache_key(spec)
    missing = [e for e in snapshot_epochs if not cache.path(snapshot_spec(spec, e)).is_file()]
    if missing:
        if cache.path(spec).is_file():
            log.info("the trained model is cached but not its weights after epochs %s: training again", missing)
        else:
            log.info("training; the weights after epochs %s are kept as cache entries", missing)
        reuse = resume = False
    hit = cache.get(spec) if reuse else None
    if hit is not None:
        (model or ctx.model).net.load_state_dict(hit["state_dict"])
        log.info("reusing cached checkpoint %s", hit["path"])
        return TrainingResult(key, str(hit["path"]), cached=True, seconds=0.0, metrics=dict(hit["metrics"]))

    module = module() if module is not None else build_module(ctx)
    model = model or ctx.model
    partial = cache.partial_path(spec)
    last = ModelCheckpoint(
        dirpath=str(partial.parent),
        filename=partial.name.removesuffix(".ckpt"),
        save_top_k=1,
        enable_version_counter=False,
    )
    callbacks: list[pl.Callback] = [last]
    watched = bar_watched(ctx.cfg)
    if not watched:
        # Nobody watches a bar (batch job, nohup, a file or pipe, progress off): a line per epoch instead,
        # and no bar, whose last frame would otherwise land in the log.
        callbacks.append(EpochLog())
    if snapshot_epochs:
        callbacks.append(EpochSnapshots(cache, spec, snapshot_epochs, model))
    trainer = ctx.trainer(callbacks=callbacks, enable_progress_bar=watched)
    ckpt_path = str(partial) if resume and cache.check_partial(spec) else None
    if ckpt_path:
        log.info("resuming interrupted training from %s", ckpt_path)
    start = time.perf_counter()
    with warnings.catch_warnings():
        # The cache folder is shared by every entry (and their locks); "no validation set" is a recipe choice.
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        warnings.filterwarnings("ignore", message=r"Total length of .* across ranks is zero")
        if getattr(module, "keeps_eval_submodules", False):  # e.g. a distillation's frozen teacher
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
        trainer.fit(module, datamodule=ctx.datamodule, ckpt_path=ckpt_path, weights_only=True)
    seconds = time.perf_counter() - start
    result = TrainingResult(key, None, cached=False, seconds=seconds, rank_zero=trainer.is_global_zero)
    if not trainer.is_global_zero:  # DDP ranks > 0 (subprocess launcher) leave scoring and writing to rank 0
        return result
    tested, _, _ = score(model, ctx.datamodule.loader("test"), eval_device(ctx.cfg.trainer.get("accelerator")))
    result.metrics = {"test/acc": tested["acc"], "test/loss": tested["loss"]}
    log.info("trained in %s%s: test accuracy %.4f, test loss %.4f", _duration(seconds),
             " (this run's part, after resuming)" if ckpt_path else "", tested["acc"], tested["loss"])  # fmt: skip
    try:
        result.cache_path = str(cache.put(spec, model.net.state_dict(), result.metrics))
    except NonFiniteModelError:
        partial.unlink(missing_ok=True)  # a non-finite model is not resumed either
        raise
    partial.unlink(missing_ok=True)
    return result


def train_unless_given(ctx: RunContext, *, record: bool = True, **kwargs: Any) -> TrainingResult | None:
    """Weights for ctx.model: None when model.pretrained / model.checkpoint supplies them, else the
    result of `ensure_trained(ctx, **kwargs)`; with `record`, rank zero also writes the training
    tables and figures into the run directory."""
    if ctx.cfg.model.get("pretrained") or ctx.cfg.model.get("checkpoint"):
        return None
    trained = ensure_trained(ctx, **kwargs)
    if trained.rank_zero:
        if record:
            write_training_outputs(ctx, trained)
        else:  # the study's metrics.json still names the weights it used
            ctx.recorder.remember({"model_fingerprint": trained.model_fingerprint})
    return trained


def load_snapshot(ctx: RunContext, epoch: int, spec: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """State dict of the model after `epoch` epochs, kept by `ensure_trained(snapshot_epochs=...)`."""
    hit = CheckpointCache(ctx.cfg.paths.cache_dir).get(snapshot_spec(spec or ctx.training_spec(), epoch))
    if hit is None:
        raise CheckpointError(f"no weights kept after epoch {epoch}: train with snapshot_epochs including it")
    return hit["state_dict"]


def log_to_dashboards(ctx: RunContext, metrics: dict[str, float]) -> None:
    """Send final metrics to TensorBoard / wandb. The CSV logger is skipped: after a spawned DDP
    fit, a CSV writer opened in this process would replace the epoch log the workers wrote."""
    for logger in ctx.loggers:
        if not isinstance(logger, CSVLogger):
            logger.log_metrics(metrics)
            logger.save()


def write_training_outputs(ctx: RunContext, result: TrainingResult) -> None:
    """Config, epoch table and curves (when this run trained), test table and metrics of a training."""
    rec = ctx.recorder
    rec.save_config(ctx.cfg)
    epochs = epoch_table(ctx)
    if len(epochs):
        rec.save_table("epochs", epochs)
        rec.save_figure("training_curves", figures.training_curves(epochs))
    rec.save_table(
        "test",
        pd.DataFrame(
            [{"split": "test", "accuracy": result.metrics.get("test/acc"), "loss": result.metrics.get("test/loss")}]
        ),  # fmt: skip
    )
    log_to_dashboards(ctx, {k: v for k, v in result.metrics.items() if k.startswith("test/")})
    rec.log_metrics(result.as_metrics())
