"""Defaults live in one place: every explainlab `_target_` of the method, attack and dataset groups is
instantiated from its YAML and again from its class defaults (with the YAML's required and
interpolated values only); the two objects must hold the same settings. A YAML value that differs
from the class default on purpose is listed in DELIBERATE with the reason."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from explainlab.config import CONF_DIR

CONF = Path(CONF_DIR)
GROUPS = ("method", "attack", "dataset")

# (group/option, key): why the YAML states another value than the class.
DELIBERATE = {
    ("attack/pgd_linf", "eps_list"): "the class sweeps [eps] alone; the YAML gives paper 001's sweep",
    ("method/distill", "kp"): "None skips the knowledge points; the YAML runs them with settings of its own",
    ("method/detect", "detector_args"): "None = each detector's own defaults; the YAML spells them out for users "
    "to override (test_detect_yaml_detector_args_are_the_detectors_defaults keeps them equal)",
    # The data modules' defaults are generic; each data set's file states its own split and batch.
    ("dataset/mnist", "val_size"): "this data set's choice: no validation split (all training images train)",
    ("dataset/mnist", "eval_batch_size"): "this data set's choice: larger evaluation batches",
    ("dataset/cifar10", "val_size"): "this data set's choice: no validation split (all training images train)",
    ("dataset/cifar10", "eval_batch_size"): "this data set's choice: larger evaluation batches",
}


def files() -> list[tuple[str, str]]:
    out = []
    for group in GROUPS:
        for path in sorted((CONF / group).glob("*.yaml")):
            target = (yaml.safe_load(path.read_text()) or {}).get("_target_", "")
            if target.startswith("explainlab."):
                out.append((group, path.stem))
    return out


def plain(value: Any) -> Any:
    """Containers compared by content: tuples as lists, OmegaConf nodes and mapping proxies as dicts."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def settings(obj: Any) -> dict[str, Any]:
    return {k: plain(v) for k, v in vars(obj).items() if not k.startswith("_")}


@pytest.mark.parametrize(("group", "option"), files())
def test_yaml_and_class_defaults_agree(compose, group: str, option: str) -> None:
    raw = yaml.safe_load((CONF / group / f"{option}.yaml").read_text())
    cfg = compose([f"{group}={option}"])
    node = cfg[group]
    from_yaml = instantiate(node)
    target = get_object(raw["_target_"])
    params = inspect.signature(target).parameters
    # What the class cannot default (required) or what other groups decide (interpolations) comes from the YAML.
    given = {
        key: node[key]
        for key, value in raw.items()
        if not key.startswith("_")
        and (
            (key in params and params[key].default is inspect.Parameter.empty)
            or (isinstance(value, str) and "${" in value)
        )
    }
    from_class = instantiate(OmegaConf.create({"_target_": raw["_target_"], **OmegaConf.to_container(
        OmegaConf.create({k: node[k] for k in given}), resolve=True)}))  # fmt: skip
    a, b = settings(from_yaml), settings(from_class)
    differing = {k for k in a if a.get(k) != b.get(k)}
    expected = {key for (where, key) in DELIBERATE if where == f"{group}/{option}"}
    assert differing == expected, {k: (a.get(k), b.get(k)) for k in differing ^ expected}


def test_detect_yaml_detector_args_are_the_detectors_defaults() -> None:
    """The detect YAML lists each detector's options with the values its class uses by default."""
    from explainlab.methods.detection import DETECTORS

    stated = yaml.safe_load((CONF / "method" / "detect.yaml").read_text())["detector_args"]
    for name, args in stated.items():
        params = inspect.signature(DETECTORS[name]).parameters
        assert {k: params[k].default for k in args} == args, name
