"""Hydra multirun sweeps: with DDP worker processes, and through the submitit launcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import explainlab

FAST = ["dataset=synthetic", "recipe.epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]


def test_multirun_with_ddp_workers_keeps_one_folder_per_job(tmp_path: Path) -> None:
    """`ddp` re-launches the command for rank 1; it must rejoin its job, not start the sweep again."""
    sweep = tmp_path / "sweep"
    proc = explainlab(
        "-m",
        "seed=0,1",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.sync_batchnorm=false",
        *FAST[:2],
        "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"], jobs
    seeds = [json.loads((sweep / j / "config.yaml").read_text().split("seed: ")[1].split()[0]) for j in jobs]
    assert seeds == [0, 1]
    for job in jobs:
        assert json.loads((sweep / job / "metrics.json").read_text())["test/acc"] >= 0
    # No stray run folders from worker processes starting their own runs or sweeps.
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("metrics.json"))


def test_submitit_local_launcher_runs_sweep_jobs(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    proc = explainlab(
        "-m",
        "hydra/launcher=submitit_local",
        "seed=0,1",
        *FAST,
        f"hydra.sweep.dir={sweep}",
        "hydra.launcher.timeout_min=10",
        cwd=tmp_path,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["test/acc"] >= 0


def test_threshold_sweep_reuses_model_and_collects(tmp_path: Path) -> None:
    """`-m method.threshold=...` trains once (cache), extracts once, and the collector merges it."""
    import pandas as pd

    from explainlab.results.collect import collect_to_disk

    sweep = tmp_path / "sweep"
    proc = explainlab(
        "-m",
        "experiment=quickstart",
        "method.threshold=0.6,0.8",
        "recipe.epochs=2",
        "attack.steps=3",
        "method.cpl.images=20",
        "method.progress=false",
        "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = [json.loads((sweep / j / "metrics.json").read_text()) for j in ("0", "1")]
    assert [m["cached"] for m in metrics] == [False, True]
    written = collect_to_disk(sweep, ["predictions", "library_sizes", "auroc"])
    merged = pd.read_csv(sweep / "collected" / "predictions.csv")
    assert sorted(merged["method.threshold"].unique()) == [0.6, 0.8] and set(merged.threshold) == {0.6, 0.8}
    assert (sweep / "collected" / "predictions.png").is_file() and len(written) == 6
