"""TensorBoard as a dashboard: the run's config as hyper-parameters and its headline numbers beside them."""

from __future__ import annotations

from pathlib import Path

import yaml

from explainlab.cli import run
from explainlab.results.dashboards import run_identity


def test_tensorboard_run_holds_config_and_headline(compose, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    cfg = compose(["dataset=synthetic", "recipe.epochs=1", "logger=tensorboard", "progress=false", "seed=3"])
    # A single run: named after the task and its overrides, no sweep group.
    identity = {"name": "train dataset=synthetic recipe.epochs=1 logger=tensorboard progress=false seed=3"}
    assert run_identity(cfg) == identity | {"group": None, "job_type": "train"}
    metrics = run(cfg)
    board = tmp_path / "run" / "tensorboard"
    hparams = yaml.safe_load((board / "hparams.yaml").read_text())
    assert hparams["seed"] == 3 and hparams["recipe"]["epochs"] == 1 and hparams["model"]["name"] == "small_cnn"
    events = EventAccumulator(str(board))
    events.Reload()
    assert events.Scalars("headline/test/acc")[0].value == metrics["test/acc"]
    plugin = events.summary_metadata["_hparams_/session_start_info"].plugin_data.content
    start = plugin_data_pb2.HParamsPluginData.FromString(plugin).session_start_info
    assert start.hparams["seed"].number_value == 3 and start.hparams["dataset/_target_"].string_value.endswith(
        "SyntheticDataModule"
    )
