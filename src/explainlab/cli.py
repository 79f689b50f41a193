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
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from explainlab.errors import ExplainlabError

# conf/ lives at the top of the repository (the package is installed editable, as in the README);
# EXPLAINLAB_CONF points elsewhere, e.g. for a copied configuration tree.
CONF_DIR = os.environ.get("EXPLAINLAB_CONF") or str(Path(__file__).resolve().parents[2] / "conf")

log = logging.getLogger("explainlab")


def quiet_library_logs() -> None:
    """Route Lightning's messages through Hydra's handlers once (not twice), drop known noise."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the task selected by `cfg.method` on a composed config (also usable from notebooks)."""
    quiet_library_logs()
    task = instantiate(cfg.method)
    return task(cfg)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
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
        print(f"explainlab: error: {cause}", file=sys.stderr)
        sys.exit(2)
    objective = metrics.get("objective") if isinstance(metrics, dict) else None
    return float(objective) if objective is not None else None
