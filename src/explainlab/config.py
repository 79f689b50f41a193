"""Composing the Hydra configuration outside the command line (tests, notebooks), and refusing
override keys that no config defines (on the command line and here)."""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from explainlab.errors import ExplainlabError

# The config groups ship inside the package (src/explainlab/conf/, package data), so a wheel runs
# as well as an editable install; EXPLAINLAB_CONF points elsewhere, e.g. for a copied tree.
CONF_DIR = os.environ.get("EXPLAINLAB_CONF") or str(Path(__file__).resolve().parent / "conf")


class UnknownKeyError(ExplainlabError):
    """An override names a key that no config defines (`recipe.epoch=3`, `+recipe.epoch=3`)."""

    def __init__(self, key: str, nearest: str | None) -> None:
        self.key, self.nearest = key, nearest
        hint = f"the nearest known key is {nearest}" if nearest else "no known key is close to it"
        super().__init__(
            f"unknown key {key}: no config defines it ({hint}). "
            "`explainlab <your overrides> --cfg job` prints every key."
        )


def compose_config(
    overrides: Sequence[str] = (), *, output_dir: str | os.PathLike | None = None, config_name: str = "config"
) -> DictConfig:
    """The resolved config `explainlab <overrides>` would run with, writing to `output_dir`.

    >>> cfg = compose_config(["experiment=quickstart"], output_dir="/tmp/run")
    >>> explainlab.cli.run(cfg)
    """
    overrides = list(overrides)
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except ConfigCompositionException:
        check_override_keys(overrides, config_name=config_name)  # a clearer message when a key is unknown
        raise
    if any(o.lstrip().startswith("+") for o in overrides):
        check_override_keys(overrides, config_name=config_name)
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


def _is_group(override: Override) -> bool:
    key = override.key_or_group
    return override.package is not None or key.startswith("hydra/") or (Path(CONF_DIR) / key).is_dir()


def _group_choices(groups: list[Override]) -> Iterator[list[str]]:
    """Group overrides without sweeps: first every group at its first value, then each further
    value of each swept group on its own (not the product: enough to learn which keys exist)."""
    values = []
    for o in groups:
        if o.is_sweep_override() and o.is_discrete_sweep():
            values.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        elif not o.is_sweep_override():
            values.append([o.input_line])
    yield [v[0] for v in values]
    for i, options in enumerate(values):
        for option in options[1:]:
            yield [option if j == i else v[0] for j, v in enumerate(values)]


def _exists(cfg: DictConfig, key: str) -> bool:
    """Whether `key` names a node of `cfg`: found by its path without resolving anything (a value such
    as `${hydra:runtime.cwd}/data` cannot be resolved outside a Hydra run, and `select` then answers
    its default), or through interpolations that do resolve (keys under `a: ${b}`)."""
    node: Any = cfg
    for part in key.split("."):
        if isinstance(node, DictConfig) and part in node.keys():
            node = node._get_node(part)
        elif isinstance(node, ListConfig) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node._get_node(int(part))
        else:
            missing = object()
            return OmegaConf.select(cfg, key, default=missing, throw_on_resolution_failure=False) is not missing
    return True


def _target_parameters(cfg: DictConfig, key: str) -> list[str] | None:
    """Argument names of the object built from `key`'s parent (a node with `_target_`), as dotted keys;
    None when the parent builds nothing or takes any keyword."""
    parent_key = key.rpartition(".")[0]
    parent = OmegaConf.select(cfg, parent_key, throw_on_resolution_failure=False) if parent_key else cfg
    if not isinstance(parent, DictConfig) or "_target_" not in parent:
        return None
    from hydra._internal.utils import _locate

    try:
        params = inspect.signature(_locate(str(parent._target_))).parameters
    except Exception:
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [f"{parent_key}.{name}" if parent_key else name for name in params]


def _target_accepts(cfg: DictConfig, key: str) -> bool:
    """Whether the object built from `key`'s parent takes `key`'s last part (or any keyword)."""
    parent_key = key.rpartition(".")[0]
    parent = OmegaConf.select(cfg, parent_key, throw_on_resolution_failure=False) if parent_key else cfg
    if not isinstance(parent, DictConfig) or "_target_" not in parent:
        return False
    params = _target_parameters(cfg, key)
    return params is None or key in params


def known_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every key of a config (list items are not descended into)."""
    keys = []
    if isinstance(cfg, DictConfig):
        for k in cfg.keys():
            path = f"{prefix}{k}"
            keys.append(path)
            node = cfg._get_node(k)
            if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
                keys += known_keys(node, path + ".")
    return keys


def nearest_key(key: str, keys: Sequence[str]) -> str | None:
    """The known key most like `key` (difflib ratio >= 0.6), preferring keys under the same parent."""
    parent = key.rpartition(".")[0]
    siblings = [k for k in keys if k.rpartition(".")[0] == parent]
    for pool in (siblings, keys):
        close = difflib.get_close_matches(key, pool, n=1, cutoff=0.6)
        if close:
            return close[0]
    return None


def check_override_keys(overrides: Sequence[str], *, config_name: str = "config") -> None:
    """Refuse overrides of keys that no config defines, with the nearest known key.

    `key=value` must name an existing key; `+key=value` may add one only where the object built from
    that part of the config takes it (e.g. `+trainer.profiler=simple`: lightning's Trainer has a
    `profiler` argument), since anything else would be accepted and silently ignored. Keys of
    Hydra's own config (`hydra.*`) are left to Hydra. Raises UnknownKeyError.
    """
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    groups = [o for o in parsed if _is_group(o)]
    values = [o for o in parsed if not _is_group(o) and not o.is_delete() and not o.key_or_group.startswith("hydra")]
    if not values:
        return
    composed = []
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for choice in _group_choices(groups):
            composed.append(compose(config_name=config_name, overrides=choice))
    for o in values:
        key = o.key_or_group
        if any(_exists(cfg, key) for cfg in composed):
            continue
        if (o.is_add() or o.is_force_add()) and any(_target_accepts(cfg, key) for cfg in composed):
            continue
        keys = {k for cfg in composed for k in known_keys(cfg)}
        if o.is_add() or o.is_force_add():
            keys |= {k for cfg in composed for k in _target_parameters(cfg, key) or []}
        raise UnknownKeyError(key, nearest_key(key, sorted(keys)))
