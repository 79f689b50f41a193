"""Composing the Hydra configuration outside the command line (tests, notebooks)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from explainlab.cli import CONF_DIR


def compose_config(
    overrides: Sequence[str] = (), *, output_dir: str | os.PathLike | None = None, config_name: str = "config"
) -> DictConfig:
    """The resolved config `explainlab <overrides>` would run with, writing to `output_dir`.

    >>> cfg = compose_config(["experiment=quickstart"], output_dir="/tmp/run")
    >>> explainlab.cli.run(cfg)
    """
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    out = Path(output_dir) if output_dir is not None else Path(cfg.paths.log_dir) / "notebook"
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out.resolve())
        cfg.hydra.runtime.cwd = os.getcwd()
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    OmegaConf.set_readonly(cfg.hydra, False)
    OmegaConf.resolve(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
