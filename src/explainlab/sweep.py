"""Hydra multirun integration: the sweep folder, each job's status, and the results collected at the end.

`SweepCallback` is configured in `conf/hydra/default.yaml` (`hydra.callbacks.sweep`), so every
`explainlab -m ...` gets it:

- on_multirun_start: Hydra 1.3 resolves `hydra.sweep.dir` in the sweep's controller before it has
  installed its own config, so `${hydra:runtime.cwd}` (paths.root_dir) and
  `${hydra:runtime.choices.method}` (task_name) fail there with "HydraConfig was not set"
  (facebookresearch/hydra#1786, #2247; fixed upstream after 1.3 by installing the controller's config
  first, hydra-ecosystem/hydra#3439). The callback does what the fix does. It then resolves the sweep
  folder once and hands it to every job, so that jobs whose task differs (`-m method=a,b`,
  `-m experiment=x,y`) still land in one folder.
- on_job_start: writes `status.json` saying `running` (a killed job keeps it; SIGTERM makes it
  `interrupted`, explainlab.cli).
- on_job_end: writes `status.json` into the job's folder (completed or failed, with the error), so that
  a collector can tell failed jobs from finished and from interrupted ones.
- on_multirun_end: writes `<sweep>/collected/` (explainlab.results.collect). Hydra's basic sweeper
  raises after the last job when one failed and never calls on_multirun_end; the callback then
  collects after every job from the first failure on, so the last job leaves a complete collection.
"""

from __future__ import annotations

import logging
import os
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from explainlab.results.io import atomic_write_json

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"


def quote_override_value(value: str) -> str:
    """`value` as a quoted Hydra override value (commas, spaces and `=` stay literal)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SweepCallback(Callback):
    """Makes `-m` work without `hydra.sweep.dir`, records job status, collects results at the end.

    collect: write <sweep>/collected/ when the sweep ends (or after a failed job, see the module doc).
    """

    def __init__(self, collect: bool = True) -> None:
        self.collect = collect
        self._sweep_dir: Path | None = None
        self._failed = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        sweep_dir = str(config.hydra.sweep.dir)
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.overrides.hydra.append(f"hydra.sweep.dir={quote_override_value(sweep_dir)}")
        self._sweep_dir = Path(sweep_dir).resolve()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """status.json says `running` until the job ends: a killed job (SIGKILL) never looks finished."""
        from lightning.pytorch.utilities import rank_zero_only

        if getattr(rank_zero_only, "rank", 0) == 0:
            output_dir = Path(config.hydra.runtime.output_dir)
            atomic_write_json(output_dir / STATUS_FILE, {"status": "running", "pid": os.getpid()})

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        from lightning.pytorch.utilities import rank_zero_only

        if getattr(rank_zero_only, "rank", 0) != 0:  # a DDP worker re-running the job: rank 0 reports it
            return
        output_dir = Path(config.hydra.runtime.output_dir)
        failed = job_return.status == JobStatus.FAILED
        status: dict[str, Any] = {"status": "failed" if failed else "completed"}
        if failed:
            error = job_return._return_value
            status["error"] = f"{type(error).__name__}: {error}"
            status["traceback"] = "".join(traceback.format_exception(error))
        atomic_write_json(output_dir / STATUS_FILE, status)
        # Only the basic launcher runs jobs in the controller's process; with the others (submitit) a
        # job must not collect while its siblings still run, and on_multirun_end does it.
        in_controller = config.hydra.launcher.get("_target_", "").endswith(".BasicLauncher")
        if self._sweep_dir is not None and self.collect and in_controller and (failed or self._failed):
            self._failed = True
            self._collect()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.collect:
            self._collect()

    def _collect(self) -> None:
        from explainlab.results.collect import collect_sweep

        if self._sweep_dir is None:
            return
        try:
            collected = collect_sweep(self._sweep_dir)
        except Exception as err:  # a failed collection must not hide the sweep's own outcome
            log.error("collecting %s failed: %s (run explainlab-collect %s)", self._sweep_dir, err, self._sweep_dir)
            return
        log.info("%s", collected.report())
