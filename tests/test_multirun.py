"""Hydra multirun sweeps as users start them (no `hydra.sweep.dir`): DDP worker processes, the submitit
launcher, the collection into <sweep>/collected/, failed jobs, and one dashboard run per job."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pandas as pd
import pytest

from tests.test_cli import explainlab, only_dir

FAST = ["dataset=synthetic", "recipe.epochs=1", "trainer.accelerator=cpu", "progress=false"]


def test_multirun_with_ddp_workers_keeps_one_folder_per_job(tmp_path: Path) -> None:
    """`ddp` re-launches the command for rank 1; it must rejoin its job, not start the sweep again."""
    proc = explainlab(
        "-m",
        "seed=0,1",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.sync_batchnorm=false",
        *FAST[:2],
        "progress=false",
        cwd=tmp_path,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    sweep = only_dir("outputs/train/multiruns/*", tmp_path)  # no second sweep started by a worker
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert jobs == ["0", "1"], jobs
    seeds = [json.loads((sweep / j / "config.yaml").read_text().split("seed: ")[1].split()[0]) for j in jobs]
    assert seeds == [0, 1]
    for job in jobs:
        assert json.loads((sweep / job / "metrics.json").read_text())["test/acc"] >= 0
        assert json.loads((sweep / job / "status.json").read_text())["status"] == "completed"
    # No stray run folders from worker processes starting their own runs.
    assert not (tmp_path / "outputs" / "train" / "runs").exists()


def test_submitit_local_launcher_runs_sweep_jobs(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = explainlab(
        "-m",
        "hydra/launcher=submitit_local",
        "seed=0,1",
        *FAST,
        "hydra.launcher.timeout_min=10",
        cwd=tmp_path,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    sweep = only_dir("outputs/train/multiruns/*", tmp_path)
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["test/acc"] >= 0
    collected = pd.read_csv(sweep / "collected" / "metrics.csv")
    assert collected["status"].tolist() == ["completed", "completed"] and collected["seed"].tolist() == [0, 1]


def test_threshold_sweep_reuses_model_and_collects(tmp_path: Path) -> None:
    """`-m method.threshold=...` trains once (cache), and the sweep's end merges the jobs' tables."""
    proc = explainlab(
        "-m",
        "experiment=quickstart",
        "method.threshold=0.6,0.8",
        "recipe.epochs=2",
        "attack.steps=3",
        "method.cpl.images=20",
        "progress=false",
        cwd=tmp_path,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    sweep = only_dir("outputs/quickstart/multiruns/*", tmp_path)
    metrics = [json.loads((sweep / j / "metrics.json").read_text()) for j in ("0", "1")]
    assert [m["cached"] for m in metrics] == [False, True]
    collected = sweep / "collected"
    merged = pd.read_csv(collected / "predictions.csv")
    assert sorted(merged["method.threshold"].unique()) == [0.6, 0.8] and set(merged.threshold) == {0.6, 0.8}
    for name in ("predictions.png", "library_sizes.png", "auroc.png", "auroc.csv", "epochs.csv", "summary.txt"):
        assert (collected / name).is_file(), name
    table = pd.read_csv(collected / "metrics.csv")
    assert table["status"].tolist() == ["completed"] * 2 and table["model_check"].tolist() == ["ok", "ok"]
    assert table["method.threshold"].tolist() == [0.6, 0.8] and "dnn/test_acc" in table


def test_failed_job_is_listed_and_the_others_run(tmp_path: Path) -> None:
    proc = explainlab("-m", "recipe.epochs=-1,1", *FAST[:1], "progress=false", cwd=tmp_path, timeout=300)
    assert proc.returncode != 0 and "recipe.epochs=-1 is invalid" in proc.stderr
    sweep = only_dir("outputs/train/multiruns/*", tmp_path)
    table = pd.read_csv(sweep / "collected" / "metrics.csv")
    assert table["status"].tolist() == ["failed", "completed"]
    assert "recipe.epochs=-1 is invalid" in table["error"][0]
    assert "job 0 failed (recipe.epochs=-1" in (sweep / "collected" / "summary.txt").read_text()
    assert len(pd.read_csv(sweep / "collected" / "test.csv")) == 1  # the failed job's tables are left out


def wandb_records(path: Path) -> list:
    """The protobuf records of an offline wandb run file (LevelDB log format: 32 KiB blocks of
    chunks with a 7-byte header: crc32, length, type FULL/FIRST/MIDDLE/LAST)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, block, chunks, records = path.read_bytes(), 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            pos += block - pos % block
            continue
        chunks = data[pos + 7 : pos + 7 + length] if kind in (1, 2) else chunks + data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
    return records


def test_wandb_sweep_has_one_run_per_job_with_its_config(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    proc = explainlab("-m", "seed=0,1", "logger=wandb", *FAST, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "already in progress" not in proc.stdout + proc.stderr
    sweep = only_dir("outputs/train/multiruns/*", tmp_path)
    for seed in (0, 1):
        records = wandb_records(only_dir("wandb/offline-run-*/*.wandb", sweep / str(seed)))
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        assert run.display_name == f"train seed={seed}" and run.job_type == "train"
        assert run.run_group == f"train/multiruns/{sweep.name}"
        config = {
            i.key: i.value_json for r in records if r.WhichOneof("record_type") == "config" for i in r.config.update
        }
        config |= {i.key: i.value_json for i in run.config.update}
        assert json.loads(config["seed"]) == seed and json.loads(config["recipe"])["epochs"] == 1
        summary = {i.key for r in records if r.WhichOneof("record_type") == "summary" for i in r.summary.update}
        assert "test/acc" in summary
        assert any(r.WhichOneof("record_type") == "exit" and r.exit.exit_code == 0 for r in records)
