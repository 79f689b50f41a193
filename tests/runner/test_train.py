"""Training and evaluation through the runner: smoke runs, cache reuse, resume, reproducibility, DDP."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from explainlab.cli import run
from explainlab.runner.checkpoint_cache import CheckpointCache
from explainlab.runner.context import RunContext
from explainlab.runner.training import bar_watched

FAST = [
    "dataset=synthetic",
    "model=small_cnn",
    "recipe.epochs=2",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
]


def test_train_smoke_on_synthetic_writes_the_run_directory(compose, tmp_path: Path, caplog) -> None:
    cfg = compose(FAST)
    with caplog.at_level(logging.INFO, logger="explainlab.runner.training"):
        result = run(cfg)
    out = Path(cfg.paths.output_dir)
    # No live bar to watch (a pipe here, like a batch job): one line per epoch with its metrics and time left.
    epoch_lines = [r.getMessage() for r in caplog.records if ": epoch " in r.getMessage()]
    assert [line.split(" in ")[0] for line in epoch_lines] == ["training: epoch 1/2", "training: epoch 2/2"]
    assert "train/loss" in epoch_lines[0] and "s/step" in epoch_lines[0] and "left" in epoch_lines[0]
    assert "left" not in epoch_lines[1]
    assert result["test/acc"] > 0.5 and not result["cached"]
    epochs = pd.read_csv(out / "results" / "epochs.csv")
    assert list(epochs["epoch"]) == [0, 1] and {"train/loss", "val/acc"} <= set(epochs.columns)
    assert json.loads((out / "metrics.json").read_text())["test/acc"] == result["test/acc"]
    assert (out / "figures" / "training_curves.png").stat().st_size > 1000
    assert "seed: 0" in (out / "config.yaml").read_text()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("progress", "trainer_bar", "terminal", "watched"),
    [(True, True, True, True), (True, True, False, False), (False, True, True, False), (True, False, True, False)],
)
def test_the_bar_is_watched_only_on_a_terminal_with_both_switches_on(
    monkeypatch, progress: bool, trainer_bar: bool, terminal: bool, watched: bool
) -> None:
    """Lightning draws its bar on stdout: stdout decides (stderr may go to a terminal while stdout
    goes to a file), and `trainer.enable_progress_bar=false` alone also brings the epoch lines."""
    monkeypatch.setattr(sys, "stdout", _Terminal() if terminal else io.StringIO())
    monkeypatch.setattr(sys, "stderr", _Terminal())
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    cfg = OmegaConf.create({"progress": progress, "trainer": {"enable_progress_bar": trainer_bar}})
    assert bar_watched(cfg) is watched


def test_no_progress_bar_where_the_epoch_lines_replace_it(compose, monkeypatch) -> None:
    """progress=true (the default) but stdout is no terminal (a batch job, nohup, a file or pipe): the
    per-epoch lines replace the bar, so the bar's last frame never lands in the log."""
    trainers = []
    build = RunContext.trainer

    def spy(self, *args, **kwargs):
        trainers.append(build(self, *args, **kwargs))
        return trainers[-1]

    monkeypatch.setattr(RunContext, "trainer", spy)
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # also under `pytest -s` from a terminal
    run(compose([o for o in FAST if not o.startswith("trainer.enable_progress_bar")]))
    assert trainers and all(t.progress_bar_callback is None for t in trainers)


def test_reruns_give_identical_numbers(compose, tmp_path: Path) -> None:
    a = run(compose(FAST + ["method.reuse=false"], tmp_path / "a"))
    b = run(compose(FAST + ["method.reuse=false"], tmp_path / "b"))
    assert a["test/acc"] == b["test/acc"] and a["test/loss"] == b["test/loss"]


def test_cache_is_reused_and_keyed_by_spec(compose, tmp_path: Path) -> None:
    first = run(compose(FAST, tmp_path / "a"))
    again = run(compose(FAST, tmp_path / "b"))
    assert again["cached"] and again["cache_key"] == first["cache_key"] and again["test/acc"] == first["test/acc"]
    with warnings.catch_warnings(record=True) as caught:  # training beside another entry of the cache
        warnings.simplefilter("always")
        other_seed = run(compose(FAST + ["seed=1"], tmp_path / "c"))
    assert not [str(w.message) for w in caught if "exists and is not empty" in str(w.message)]
    assert not other_seed["cached"] and other_seed["cache_key"] != first["cache_key"]
    # Worker count and logging do not change the weights, so they do not change the key.
    same = run(compose(FAST + ["dataset.num_workers=0", "logger=tensorboard"], tmp_path / "d"))
    assert same["cached"]


def test_cache_entry_is_checked_against_its_key(compose, tmp_path: Path) -> None:
    from explainlab.runner.context import RunContext

    result = run(compose(FAST, tmp_path / "a"))
    ctx = RunContext(compose(FAST, tmp_path / "b"))
    cache = CheckpointCache(ctx.cfg.paths.cache_dir)
    path = Path(result["cache_path"])
    entry = torch.load(path, weights_only=True)
    entry["spec"] = entry["spec"].replace('"seed":0', '"seed":5')
    torch.save(entry, path)
    with pytest.warns(RuntimeWarning, match="another spec"):
        assert cache.get(ctx.training_spec()) is None  # moved aside, the model is trained again
    assert not path.exists() and len(list(path.parent.glob(f"{path.name}.corrupt-*"))) == 1


@pytest.mark.parametrize(
    "model",
    [
        ["model=small_cnn"],
        ["model=mnist_cnn", "dataset.image_size=28"],  # dropout: the resumed run must continue the RNG stream
    ],
    ids=["small_cnn", "mnist_cnn with dropout"],
)
def test_interrupted_training_resumes(compose, tmp_path: Path, model: list[str], caplog) -> None:
    """A run stopped after epoch 1 of 3 continues from there and ends where an uninterrupted run does."""
    base = [o for o in FAST if not o.startswith("model=")] + model
    hard = ["dataset.noise=0.8", "recipe.epochs=3", "method.reuse=false"]  # a loss far from 0, to compare
    full = run(compose(base + hard, tmp_path / "full"))
    # reuse=false: the full run above has put its result in the cache.
    cfg = compose(base + hard, tmp_path / "cut")
    from explainlab.runner import training as train_mod

    class Stop(Exception):
        pass

    original = train_mod.ClassifierModule.on_train_epoch_end

    def stop_after_first(self):  # noqa: ANN001
        if self.current_epoch == 1:
            raise Stop
        return original(self)

    train_mod.ClassifierModule.on_train_epoch_end = stop_after_first
    try:
        with pytest.raises(Stop):
            run(cfg)
    finally:
        train_mod.ClassifierModule.on_train_epoch_end = original
    partial = CheckpointCache(cfg.paths.cache_dir).partial_path(RunContext(cfg).training_spec())
    assert partial.is_file()
    with caplog.at_level(logging.INFO, logger="explainlab.runner.training"):
        resumed = run(compose(base + hard, tmp_path / "resumed"))
    assert "trained in" in caplog.text and "(this run's part, after resuming)" in caplog.text
    assert not partial.exists()
    assert resumed["test/acc"] == full["test/acc"] and resumed["test/loss"] == pytest.approx(
        full["test/loss"], rel=1e-6
    )


def test_evaluate_uses_the_cached_checkpoint(compose, tmp_path: Path) -> None:
    trained = run(compose(FAST, tmp_path / "train"))
    cfg = compose(FAST + ["method=evaluate", "method.progress=false"], tmp_path / "eval")
    result = run(cfg)
    assert result["test/acc"] == pytest.approx(trained["test/acc"])
    out = Path(cfg.paths.output_dir)
    per_class = pd.read_csv(out / "results" / "per_class.csv")
    assert len(per_class) == 4 and (out / "figures" / "confusion_matrix.png").is_file()


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
def test_other_loggers_record_metrics_and_figures(compose, tmp_path: Path, logger: str) -> None:
    cfg = compose(FAST + [f"logger={logger}", "recipe.epochs=1"])
    run(cfg)
    out = Path(cfg.paths.output_dir)
    if logger == "tensorboard":
        assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    else:
        runs = list((out / "wandb").glob("offline-run-*"))
        assert runs, "wandb must run offline by default"
    assert (out / "csv" / "metrics.csv").is_file()


def test_ddp_spawn_two_cpu_processes(compose, tmp_path: Path) -> None:
    cfg = compose(FAST + ["trainer=ddp_spawn", "recipe.epochs=1"])
    result = run(cfg)
    assert 0.0 <= result["test/acc"] <= 1.0
    epochs = pd.read_csv(Path(cfg.paths.output_dir) / "results" / "epochs.csv")
    assert "train/loss" in epochs and len(epochs) == 1


def test_negative_epochs_are_refused(compose) -> None:
    from explainlab.errors import ConfigValueError

    with pytest.raises(ConfigValueError, match="recipe.epochs"):
        run(compose(FAST + ["recipe.epochs=-2"]))


# slow: ~2 min on the 2-core CPU (one MNIST epoch); run with -m slow, recorded in docs/benchmarks.md
@pytest.mark.slow
@pytest.mark.shared_data
def test_one_epoch_of_mnist_cnn_on_real_mnist(compose, tmp_path: Path, shared_data: Path) -> None:
    cfg = compose(
        [
            "experiment=mnist_example",
            f"dataset.root={shared_data}",
            "dataset.download=false",
            "recipe.epochs=1",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
            "dataset.batch_size=128",
        ]
    )
    result = run(cfg)
    assert result["test/acc"] >= 0.97, result
