"""The command line: the quickstart end to end, and clear failures on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def explainlab(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "EXPLAINLAB_ROOT": str(cwd), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "explainlab", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_quickstart_end_to_end(tmp_path: Path) -> None:
    proc = explainlab("experiment=quickstart", "hydra.run.dir=" + str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.9
    for name in ("config.yaml", "results/epochs.csv", "results/test.csv", "figures/training_curves.png"):
        assert (run / name).is_file(), name
    assert "test accuracy" in proc.stdout and "run directory" in proc.stdout
    # The second run reuses the cached checkpoint instead of retraining, with identical numbers.
    again = explainlab("experiment=quickstart", "hydra.run.dir=" + str(tmp_path / "run2"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    metrics2 = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert metrics2["cached"] is True and metrics2["test/acc"] == metrics["test/acc"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["dataset=imagenet"], "Available options"),
        (["recipe.epochs=-1"], "recipe.epochs=-1 is invalid"),
        (["model.taps=[conv1,nope]"], "model.taps='nope' is invalid"),
        (["dataset=mnist", "dataset.download=false"], "MNIST not found in"),
        (["dataset=cifar10", "model=resnet20", "dataset.download=false", "dataset.verify=false"], "CIFAR-10 not found"),
        (["model=mnist_cnn"], "model.name='mnist_cnn' is invalid"),
        (["method=evaluate"], "no weights to evaluate"),
        (["method=evaluate", "method.split=dev"], "method.split='dev' is invalid"),
    ],
)
def test_bad_input_fails_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    proc = explainlab(*args, "hydra.run.dir=" + str(tmp_path / "run"), cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-3000:]
