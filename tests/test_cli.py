"""The command line as users type it: the quickstart end to end from a fresh folder, `--help`, and
clear failures on bad input. No test adds `hydra.run.dir` or `EXPLAINLAB_ROOT`: runs land where a
user's would, under the working directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Variables a user would not have set; the test's own cache stays under the temporary working folder.
_UNSET = ("EXPLAINLAB_ROOT", "EXPLAINLAB_CACHE", "EXPLAINLAB_DATA", "EXPLAINLAB_MODELS", "EXPLAINLAB_CONF")


def command() -> list[str]:
    """The installed `explainlab` script beside this Python, else `python -m explainlab` (the same)."""
    script = Path(sys.executable).with_name("explainlab")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "explainlab"]


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _UNSET}
    return env | {"PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"} | extra


def explainlab(
    *args: str, cwd: Path, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*command(), *args], cwd=cwd, env=env or user_env(), capture_output=True, text=True, timeout=timeout
    )


def only_dir(pattern: str, root: Path) -> Path:
    found = sorted(root.glob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]


def test_quickstart_end_to_end(tmp_path: Path) -> None:
    """The README's first command, as written, from an empty folder; then again, from the cache."""
    proc = explainlab("experiment=quickstart", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_dir("outputs/quickstart/runs/*", tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.9
    for name in ("config.yaml", "results/epochs.csv", "results/test.csv", "figures/training_curves.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    # Not a terminal: the summary is plain `key: value` lines, the run folder on one line, and it is
    # in the run's log too; each Lightning line is printed once.
    assert f"run directory: {run}\n" in proc.stdout and "test accuracy" in proc.stdout
    assert f"run directory: {run}" in (run / "quickstart.log").read_text()
    assert (proc.stdout + proc.stderr).count("Seed set to 0") == 1
    assert "AUROC eps=0.3, best of 5 θ-sets: " in proc.stdout and "chance 0.5" in proc.stdout
    # No live bar in a pipe: one line per training epoch instead; no "try installing litlogger" adverts.
    assert "training: epoch 1/" in proc.stderr + proc.stdout and "💡" not in proc.stdout + proc.stderr
    assert "Epoch 0" not in proc.stdout + proc.stderr  # nor the bar's last frame (its epochs count from 0)
    # The second run reuses the cached checkpoint instead of retraining, with identical numbers.
    shutil.rmtree(tmp_path / "outputs")
    again = explainlab("experiment=quickstart", "progress=false", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    metrics2 = json.loads((only_dir("outputs/quickstart/runs/*", tmp_path) / "metrics.json").read_text())
    assert metrics2["cached"] is True and metrics2["test/acc"] == metrics["test/acc"]
    assert "Epoch" not in again.stdout + again.stderr and "it/s" not in again.stderr  # progress=false: no bars


def test_help_is_a_project_page(tmp_path: Path) -> None:
    proc = explainlab("--help", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    presets = sorted(p.stem for p in (REPO / "src/explainlab/conf/experiment").glob("*.yaml"))
    lines = proc.stdout.splitlines()
    for preset in presets:  # each preset with a line of its own saying what it does
        assert any(line.split()[:1] == [preset] and len(line.split()) > 2 for line in lines), preset
    expected = ["dataset: cifar10, digits, mnist, synthetic", "progress=false", "explainlab -m ", "multiruns"]
    expected += ["collected/", "explainlab-collect", "--cfg job", "--info defaults", "wandb sync", "tensorboard"]
    for text in expected:
        assert text in proc.stdout, text


@pytest.mark.parametrize(
    "args,message",
    [
        (["dataset=imagenet"], "Available options"),
        (["recipe.epochs=-1"], "recipe.epochs=-1 is invalid"),
        (["recipe.epoch=3"], "unknown key recipe.epoch: no config defines it (the nearest known key is recipe.epochs)"),
        (
            ["+recipe.epoch=3"],
            "unknown key recipe.epoch: no config defines it (the nearest known key is recipe.epochs)",
        ),
        (["model.taps=[conv1,nope]"], "model.taps='nope' is invalid"),
        (["dataset=mnist", "dataset.download=false"], "MNIST not found in"),
        (["dataset=cifar10", "model=resnet20", "dataset.download=false", "dataset.verify=false"], "CIFAR-10 not found"),
        (["model=mnist_cnn"], "model.name='mnist_cnn' is invalid"),
        (["method=evaluate"], "no weights to evaluate"),
        (["method=evaluate", "method.split=dev"], "method.split='dev' is invalid"),
    ],
)
def test_bad_input_fails_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    proc = explainlab(*args, cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-3000:]


def test_an_invalid_value_is_printed_once_and_kept_in_the_run_log(tmp_path: Path) -> None:
    proc = explainlab("recipe.epochs=-1", cwd=tmp_path, timeout=120)
    message = "recipe.epochs=-1 is invalid"
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.count(message) == 1 and (proc.stdout + proc.stderr).count(message) == 1, proc.stderr
    assert f"explainlab: error: {message}" in proc.stderr and "Traceback" not in proc.stderr
    log = only_dir("outputs/train/runs/*", tmp_path) / "train.log"
    assert log.read_text().count(message) == 1
