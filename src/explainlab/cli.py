"""Hydra entry point: `explainlab [group=option ...] [key=value ...]` or `python -m explainlab`.

The `method` group names a task class (`_target_`); the task gets the whole config, does its
work, writes the run directory and prints a summary. Its metrics dict is returned, and a float
`objective` key (when present) is handed to Hydra sweepers.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, read_write

from explainlab.config import CONF_DIR
from explainlab.errors import ExplainlabError

log = logging.getLogger("explainlab")

_DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "PL_GLOBAL_SEED")


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
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the task selected by `cfg.method` on a composed config (also usable from notebooks).

    Each call is one dashboard run: a wandb run opened by the task is finished when it returns.
    """
    from explainlab.results.dashboards import finish_dashboards

    quiet_library_logs()
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
            sys.exit(2)
        except Exception:  # malformed overrides, unknown options: Hydra reports those itself below
            pass
    hydra_main()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    pin_ddp_children_to_this_job()
    ddp_environment = {name: os.environ.get(name) for name in _DDP_ENV}
    try:
        metrics = run(cfg)
    except (ExplainlabError, InstantiationException) as err:
        cause = (
            err.__cause__
            if isinstance(err, InstantiationException) and isinstance(err.__cause__, ExplainlabError)
            else err
        )
        if not isinstance(cause, ExplainlabError):
            raise
        log.error("%s", cause)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise cause from None  # only this job fails: Hydra runs the others, then reports it
        print(f"explainlab: error: {cause}", file=sys.stderr)
        sys.exit(2)
    finally:
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
