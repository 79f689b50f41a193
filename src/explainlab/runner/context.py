"""Builds the objects of a run from its composed config: data, model, loggers, trainer, recorder."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from explainlab.data.base import ImageDataModule
from explainlab.errors import ConfigValueError, check_int
from explainlab.models.pixel_space import PixelSpaceModel
from explainlab.results.dashboards import open_loggers
from explainlab.results.recorder import RunRecorder

# Keys that decide trained weights; anything else (paths, workers, taps, logging) does not.
_MODEL_SPEC_KEYS = (
    "_target_",
    "name",
    "num_classes",
    "in_channels",
    "image_size",
    "mean",
    "std",
    "pretrained",
    "checkpoint",
    "weights",
)
# Dataset keys that say where and how data is read, not which images: never part of a cache key.
_DATA_LOCATION_KEYS = ("root", "download", "verify", "num_workers", "eval_batch_size", "on_device", "pin_memory")
_TRAINER_SPEC_KEYS = (
    "max_epochs",
    "max_steps",
    "limit_train_batches",
    "precision",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "devices",
    "num_nodes",
    "strategy",
)


class RunContext:
    """Lazily built pieces of one run. `cfg` is the full composed config."""

    def __init__(self, cfg: DictConfig, output_dir: str | Path | None = None) -> None:
        self.cfg = cfg
        self.output_dir = Path(output_dir or cfg.paths.output_dir)
        validate_config(cfg)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled as its config alone (e.g. for spawned DDP processes): data, model, loggers and
        recorder are built again where it is unpickled."""
        return {"cfg": self.cfg, "output_dir": self.output_dir}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.cfg, self.output_dir = state["cfg"], state["output_dir"]

    @cached_property
    def datamodule(self) -> ImageDataModule:
        return instantiate(self.cfg.dataset)

    @cached_property
    def model(self) -> PixelSpaceModel:
        """The configured model, its initial weights drawn from a generator seeded with `seed` alone:
        the same spec gives the same initial weights whatever was built or drawn before (every
        study trains the model `method=train` trains), and building it draws nothing from the
        global stream that training uses next."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            model = instantiate(self.cfg.model)
        check_model_fits_data(model, self.cfg)
        return model

    @cached_property
    def loggers(self) -> list[Any]:
        """The configured logger plus a CSV logger (the run's epoch table is read from it); one
        dashboard run per job, the config logged as hyper-parameters (results.dashboards)."""
        return open_loggers(self.cfg, self.output_dir)

    @cached_property
    def recorder(self) -> RunRecorder:
        return RunRecorder(self.output_dir, self.loggers)

    def trainer(self, callbacks: list[Any] | None = None, **overrides: Any) -> pl.Trainer:
        return instantiate(self.cfg.trainer, logger=self.loggers, callbacks=callbacks or [], **overrides)

    def data_spec(self, drop: tuple[str, ...] = ()) -> dict[str, Any]:
        """The dataset config without location/loader keys (and without `drop`): which images."""
        dataset = OmegaConf.to_container(self.cfg.dataset, resolve=True)
        return {k: v for k, v in dataset.items() if k not in _DATA_LOCATION_KEYS and k not in drop}

    def training_spec(self) -> dict[str, Any]:
        """Everything that determines trained weights; hashed into the checkpoint-cache key."""
        cfg = OmegaConf.to_container(self.cfg, resolve=True)
        model = {k: cfg["model"].get(k) for k in _MODEL_SPEC_KEYS}
        data = self.data_spec(drop=("limit_val", "limit_test"))
        trainer = {k: cfg["trainer"].get(k) for k in _TRAINER_SPEC_KEYS}
        return {"model": model, "dataset": data, "recipe": cfg["recipe"], "seed": cfg["seed"], "trainer": trainer}


def validate_config(cfg: DictConfig) -> None:
    """Fail early, naming the key, on values Hydra's schema-free configs cannot refuse themselves.

    Runs in `explainlab.cli.run` before the method is built and anything is loaded or trained, and
    again in RunContext (notebooks). A study's own keys are checked by its constructor, which
    `cli.run` calls next, still before any work.
    """
    check_int("seed", cfg.seed, minimum=0)
    check_int("recipe.epochs", cfg.recipe.epochs, minimum=0)
    check_int("recipe.batch_size", cfg.recipe.batch_size, minimum=1)
    for key in ("crop_padding",):
        check_int(f"recipe.augment.{key}", cfg.recipe.augment[key], minimum=0)
    trainer = cfg.get("trainer") or {}
    check_int("trainer.max_epochs", trainer.get("max_epochs"), minimum=0, optional=True)
    if trainer.get("max_steps") is not None and trainer.get("max_steps") != -1:
        check_int("trainer.max_steps", trainer.get("max_steps"), minimum=0)
    _check_channels(cfg)
    attack = cfg.get("attack")
    if attack is not None and "_target_" in attack:
        try:  # the attack checks its own settings (backend, fold_bn, compile, ...) when built
            instantiate(attack)
        except InstantiationException as err:  # Hydra wraps the attack's own ConfigValueError
            raise err.__cause__ if isinstance(err.__cause__, ConfigValueError) else err


def _check_channels(cfg: DictConfig) -> None:
    """The model's input channels (and its mean/std, one per channel) must be the data set's."""
    model, dataset = cfg.get("model"), cfg.get("dataset")
    if model is None or dataset is None or "in_channels" not in dataset:
        return
    if (cfg.get("method") or {}).get("image_paths"):  # images come from files, not from the data set
        return
    name = str(dataset.get("_target_", "")).rsplit(".", 1)[-1]
    channels = dataset.in_channels
    if model.get("in_channels") is not None and model.in_channels != channels:
        raise ConfigValueError(
            "model.in_channels", model.in_channels, f"{channels}, the channels of the images of dataset {name}"
        )
    for key in ("mean", "std"):
        values = model.get(key)
        if values is not None and not isinstance(values, (int, float)) and len(values) not in (1, channels):
            raise ConfigValueError(
                "model", model.get("name"),
                f"a model for the {channels}-channel images of dataset {name}: this model config is made for "
                f"{len(values)}-channel images (model.{key} has {len(values)} values, one per channel)",
            )  # fmt: skip


def check_model_fits_data(model: torch.nn.Module, cfg: DictConfig) -> None:
    """One dummy forward pass: a model that cannot take the data set's images fails here, clearly."""
    c, s = cfg.dataset.get("in_channels", cfg.model.in_channels), cfg.model.image_size
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, c, s, s))
    except RuntimeError as err:
        raise ConfigValueError(
            "model.name",
            cfg.model.name,
            f"a model that accepts {c}x{s}x{s} images of dataset {cfg.dataset._target_.rsplit('.', 1)[-1]} ({err})",
        ) from err
    finally:
        model.train(was_training)
    if out.shape[-1] != cfg.model.num_classes:
        raise ConfigValueError("model.num_classes", cfg.model.num_classes, f"the model's {out.shape[-1]} outputs")
