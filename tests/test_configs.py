"""Every option of every config group, and every experiment preset, composes and resolves."""

from __future__ import annotations

from pathlib import Path

import pytest

from explainlab.cli import CONF_DIR

CONF = Path(CONF_DIR)
GROUPS = ["dataset", "model", "method", "attack", "trainer", "logger", "recipe", "paths"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_group_option_composes(compose, group: str, option: str) -> None:
    cfg = compose([f"{group}={option}"])
    assert cfg.paths.output_dir


@pytest.mark.parametrize("preset", options("experiment"))
def test_experiment_preset_composes(compose, preset: str) -> None:
    cfg = compose([f"experiment={preset}"])
    assert cfg.task_name == preset


@pytest.mark.parametrize("option", options("model"))
def test_every_model_builds_with_valid_taps(compose, option: str) -> None:
    from hydra.utils import instantiate

    dataset = {
        "resnet20": "cifar10",
        "resnet32": "cifar10",
        "resnet44": "cifar10",
        "resnet56": "cifar10",
        "resnet110": "cifar10",
        "mnist_cnn": "mnist",
        "lenet_classic": "mnist",
    }.get(option, "digits")
    cfg = compose([f"model={option}", f"dataset={dataset}"])
    model = instantiate(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_unknown_group_option_lists_choices(compose) -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(
        ConfigCompositionException, match=r"(?s)Could not find 'dataset/imagenet'.*Available options.*cifar10.*mnist"
    ):
        compose(["dataset=imagenet"])


@pytest.mark.parametrize("override", ["recipe.epoch=3", "+recipe.epoch=3", "++recipe.epoch=3"])
def test_unknown_key_is_refused_with_the_nearest_known_key(compose, override: str) -> None:
    """Hydra's own hint for a typo is "use +recipe.epoch=3", which it then accepts silently."""
    from explainlab.config import UnknownKeyError

    with pytest.raises(UnknownKeyError, match=r"unknown key recipe\.epoch: .*nearest known key is recipe\.epochs"):
        compose([override])


def test_added_key_is_accepted_where_the_built_object_takes_it(compose) -> None:
    from explainlab.config import UnknownKeyError, check_override_keys

    assert compose(["+trainer.profiler=simple"]).trainer.profiler == "simple"  # a lightning Trainer argument
    with pytest.raises(UnknownKeyError, match="nearest known key is trainer.profiler"):
        check_override_keys(["+trainer.profilr=simple"])
    with pytest.raises(UnknownKeyError, match="method.threshhold.*nearest known key is method.threshold"):
        check_override_keys(["method=library", "method.threshhold=0.5,0.6"])
    check_override_keys(["model=resnet20,small_cnn", "dataset=cifar10", "hydra.sweep.dir=x", "seed=0,1"])


def test_submitit_launchers_compose(compose) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from explainlab.config import compose_config  # noqa: F401  (compose fixture resolves)

    for launcher in ("submitit_local", "submitit_slurm", "slurm_ddp"):
        compose([f"hydra/launcher={launcher}"])


def test_keys_whose_value_needs_a_hydra_run_are_known() -> None:
    """`dataset.root` is `${paths.data_dir}`, which reads `${hydra:runtime.cwd}`: outside a Hydra run it
    cannot be resolved, and the key was refused as unknown with itself as the nearest key."""
    from explainlab.config import UnknownKeyError, check_override_keys

    check_override_keys(["experiment=heatmaps_cifar", "dataset.root=/some/where"])
    check_override_keys(["dataset=cifar10", "paths.data_dir=/some/where", "model.taps.0=conv1"])
    with pytest.raises(UnknownKeyError, match="nearest known key is dataset.root"):
        check_override_keys(["dataset=cifar10", "dataset.roots=/some/where"])


def test_mnist_library_preset_trains_the_papers_network_and_recipe(compose) -> None:
    """Paper 001 trained the 2018 pytorch/examples network with its default parameters (its code's Nets.py)."""
    cfg = compose(["experiment=libnet_mnist"])
    assert cfg.model.name == "lenet_classic" and cfg.recipe.epochs == 10 and cfg.recipe.batch_size == 64
    assert cfg.recipe.optimizer._target_ == "torch.optim.SGD" and cfg.recipe.optimizer.lr == 0.01
    assert cfg.recipe.optimizer.momentum == 0.5 and cfg.recipe.scheduler is None
