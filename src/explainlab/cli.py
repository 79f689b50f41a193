"""Hydra entry point: `explainlab [group=option ...] [key=value ...]` or `python -m explainlab`.

The `method` group names a task class (`_target_`); the task gets the whole config, does its
work, writes the run directory and prints a summary. Its metrics dict is returned, and a float
`objective` key (when present) is handed to Hydra sweepers.

Guarantees (docs/usage.md, "What is guaranteed"): the config is checked before anything is built;
every random generator is seeded from `seed` here, before the method, data or model exist; SIGTERM
ends the run with exit code 143 and `status.json` saying `interrupted` (its metrics.json is renamed
`metrics.interrupted.json`, so it never looks finished); a config error exits 2 with one line.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, read_write

from explainlab.config import CONF_DIR
from explainlab.errors import ExplainlabError, RunInterrupted

log = logging.getLogger("explainlab")

EXIT_CONFIG_ERROR = 2
EXIT_INTERRUPTED = 128 + signal.SIGTERM  # 143, what shells and batch systems expect after SIGTERM
_DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "PL_GLOBAL_SEED")


class _NoAdverts(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger / litmodels" lines (one per trainer)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_library_logs() -> None:
    """Route Lightning's messages through Hydra's handlers once (not twice), drop known noise.

    `import lightning` gives its logger a console handler of its own ("INFO: ..."), and the
    subpackages stop propagation when no root handler exists yet; with Hydra's handlers on the
    root logger every line would print twice.
    """
    import lightning  # noqa: F401  (adds the handlers removed here)

    if logging.getLogger().handlers:  # Hydra's (a notebook without logging set up keeps Lightning's own)
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in rank_zero.filters):
        rank_zero.addFilter(_NoAdverts())
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the task selected by `cfg.method` on a composed config (also usable from notebooks).

    Each call is one dashboard run: a wandb run opened by the task is finished when it returns.
    """
    import lightning

    from explainlab.results.dashboards import finish_dashboards
    from explainlab.results.io import remove_orphans
    from explainlab.runner.context import validate_config

    quiet_library_logs()
    validate_config(cfg)  # bad values are named before anything is built, loaded or trained
    # The one seeding of the run: before the method, data or model are built.
    lightning.seed_everything(cfg.seed, workers=True, verbose=False)
    cache_dir = cfg.get("paths", {}).get("cache_dir")
    if cache_dir:
        remove_orphans(cache_dir)
    try:
        task = instantiate(cfg.method)
    except InstantiationException as err:
        if isinstance(err.__cause__, ExplainlabError):  # show the config error, not Hydra's wrapper
            raise err.__cause__ from None
        raise
    failed = True
    try:
        metrics = task(cfg)
        failed = False
        return metrics
    finally:
        finish_dashboards(failed=failed)


def pin_ddp_children_to_this_job() -> None:
    """Make DDP worker processes re-enter this sweep job, not start a new sweep.

    Lightning's `ddp` strategy starts ranks > 0 by re-running the command line plus
    `hydra.run.dir=<HydraConfig.run.dir>`. In a multirun, the command line holds `-m` and the
    sweep, and run.dir is not the job's folder: every worker would launch the whole sweep again
    into fresh folders. Replacing argv by this job's own overrides and run.dir by this job's output
    folder makes every rank of job N run job N in job N's folder.
    """
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


def main() -> None:
    """`explainlab [-m] [overrides]`: refuse keys no config defines (naming the nearest known key,
    `+key=value` included), then hand the command line to Hydra."""
    from hydra._internal.utils import get_args_parser

    from explainlab.config import check_override_keys

    args, _ = get_args_parser().parse_known_args()
    if not (args.shell_completion or args.config_path or args.config_dir or args.config_name):
        try:
            check_override_keys(args.overrides)
        except ExplainlabError as err:
            print(f"explainlab: error: {err}", file=sys.stderr)
            sys.exit(EXIT_CONFIG_ERROR)
        except Exception:  # malformed overrides, unknown options: Hydra reports those itself below
            pass
    hydra_main()


def log_to_files(level: int, message: str) -> None:
    """Write `message` to the log files of the root logger's handlers (the run's `<task>.log`), not to
    the console, where the one-line `explainlab: error:` says it."""
    record = log.makeRecord(log.name, level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise RunInterrupted(signum)


def write_status(output_dir: str | Path, status: str, **details: Any) -> None:
    """The run's `status.json` (running, completed, failed, interrupted), as the sweep callback writes it."""
    from explainlab.results.io import atomic_write_json
    from explainlab.sweep import STATUS_FILE

    atomic_write_json(Path(output_dir) / STATUS_FILE, {"status": status, **details})


def mark_interrupted(output_dir: str | Path, signum: int) -> None:
    """Leave an interrupted run's folder so that nothing in it looks finished."""
    output_dir = Path(output_dir)
    metrics = output_dir / "metrics.json"
    if metrics.is_file():
        os.replace(metrics, output_dir / "metrics.interrupted.json")
    write_status(
        output_dir,
        "interrupted",
        error=f"stopped by signal {signum} before the run finished",
        resume="run the same command again: finished cache entries are reused and an interrupted training "
        "resumes from its last completed epoch",
    )


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    pin_ddp_children_to_this_job()
    ddp_environment = {name: os.environ.get(name) for name in _DDP_ENV}
    output_dir = HydraConfig.get().runtime.output_dir
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupted) if in_main_thread else None
    try:
        metrics = run(cfg)
    except RunInterrupted as stop:
        log.error("interrupted by signal %d: run marked interrupted in %s", stop.signum, output_dir)
        mark_interrupted(output_dir, stop.signum)
        print(f"explainlab: interrupted (signal {stop.signum}); rerun the same command to resume", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except (ExplainlabError, InstantiationException) as err:
        cause = (
            err.__cause__
            if isinstance(err, InstantiationException) and isinstance(err.__cause__, ExplainlabError)
            else err
        )
        if not isinstance(cause, ExplainlabError):
            raise
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("%s", cause)
            raise cause from None  # only this job fails: Hydra runs the others, then reports it
        write_status(output_dir, "failed", error=f"{type(cause).__name__}: {cause}")
        log_to_files(logging.ERROR, str(cause))  # the run's log keeps it; the terminal shows it once, below
        print(f"explainlab: error: {cause}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)
        # The next job of a sequential sweep starts a new DDP group with new worker processes.
        # Lightning leaves LOCAL_RANK etc. in this process's environment; the next job would take
        # them to mean that someone else launches its workers, and wait for them forever.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name, value in ddp_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    objective = metrics.get("objective") if isinstance(metrics, dict) else None
    return float(objective) if objective is not None else None
