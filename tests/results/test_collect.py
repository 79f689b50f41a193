"""The sweep collector on crafted sweep folders: statuses, varying overrides, split figure lines,
model-fingerprint checks, and the `explainlab-collect` command."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from explainlab.results.collect import (
    collect_sweep,
    expected_jobs,
    main,
    model_fingerprint_conflicts,
    split_keys,
    sweep_jobs,
    swept_keys,
    varying_keys,
)


def make_sweep(root: Path, arguments: list[str], jobs: dict[str, dict]) -> Path:
    """A sweep folder as Hydra's basic sweeper leaves it: multirun.yaml and one folder per job with
    .hydra/overrides.yaml, status.json, metrics.json and results/ (each only when given)."""
    sweep = root / "sweep"
    hydra_cfg = {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
        "sweep": {"dir": str(sweep), "subdir": "${hydra.job.num}"},
        "overrides": {"task": arguments, "hydra": []},
    }
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra_cfg}))
    for name, job in jobs.items():
        folder = sweep / name
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(job["overrides"]))
        if "status" in job:
            (folder / "status.json").write_text(json.dumps({"status": job["status"], "error": job.get("error")}))
        if "metrics" in job:
            (folder / "metrics.json").write_text(json.dumps(job["metrics"]))
        for table, frame in job.get("tables", {}).items():
            (folder / "results" / table).parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(folder / "results" / f"{table}.csv", index=False)
    return sweep


def predictions(top_k: int) -> pd.DataFrame:
    rows = [(layer, t, 0.5 + 0.1 * t + 0.01 * top_k) for layer in ("conv1", "fc1") for t in (0.6, 0.8)]
    return pd.DataFrame(rows, columns=["layer", "threshold", "top1_agreement"]).assign(top3_agreement=0.9)


def test_statuses_tables_and_varying_overrides(tmp_path: Path) -> None:
    sweep = make_sweep(
        tmp_path,
        ["method.top_k=1,3,5", "recipe.epochs=1"],
        {
            "0": {
                "overrides": ["method.top_k=1", "recipe.epochs=1"],
                "status": "completed",
                "metrics": {"acc": 0.9, "nested": {"a": 1}},
                "tables": {"predictions": predictions(1), "confusion/conv1": pd.DataFrame({"x": [1]})},
            },
            "1": {
                "overrides": ["method.top_k=3", "recipe.epochs=1"],
                "status": "failed",
                "error": "ValueError: boom",
                "tables": {"predictions": predictions(3)},
            },
            # "2" never started (not run)
        },
    )
    assert swept_keys(sweep) == ["method.top_k"]
    assert [j["method.top_k"] for j in expected_jobs(sweep)] == ["1", "3", "5"]
    jobs = sweep_jobs(sweep)
    assert [(j.name, j.status) for j in jobs] == [("0", "completed"), ("1", "failed"), ("2", "not run")]
    assert varying_keys(jobs) == ["method.top_k"]
    collected = collect_sweep(sweep)
    out = sweep / "collected"
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["status"].tolist() == ["completed", "failed", "not run"]
    assert metrics["error"][1] == "ValueError: boom" and metrics["nested/a"][0] == 1
    merged = pd.read_csv(out / "predictions.csv")
    assert set(merged["job"]) == {0} and "method.top_k" in merged  # the failed job's partial table left out
    assert (out / "confusion" / "conv1.csv").is_file() and (out / "predictions.png").is_file()
    report = (out / "summary.txt").read_text()
    assert "job 1 failed (method.top_k=3 recipe.epochs=1): ValueError: boom" in report
    assert "job 2 not run" in report and report == collected.report() + "\n"


def test_figure_lines_are_split_by_overrides_that_vary_at_one_point() -> None:
    """A top_k sweep gives two agreement values per (layer, θ): lines must split, not zig-zag;
    a threshold sweep's override is the x axis itself and splits nothing."""
    top_k = pd.concat([predictions(1).assign(**{"method.top_k": 1}), predictions(3).assign(**{"method.top_k": 3})])
    assert split_keys(top_k, ["method.top_k"], ("layer", "threshold")) == ["method.top_k"]
    threshold = predictions(1).assign(**{"method.threshold": lambda f: f["threshold"]})
    assert split_keys(threshold, ["method.threshold"], ("layer", "threshold")) == []
    from explainlab.results import library_figures

    figure = library_figures.agreement(top_k, by=["method.top_k"])
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels == ["conv1, method.top_k=1", "fc1, method.top_k=1", "conv1, method.top_k=3", "fc1, method.top_k=3"]


def test_override_column_does_not_overwrite_a_table_column(tmp_path: Path) -> None:
    jobs = {
        str(i): {"overrides": [f"seed={i}"], "status": "completed", "tables": {"t": pd.DataFrame({"seed": [7]})}}
        for i in (0, 1)
    }
    collect_sweep(make_sweep(tmp_path, ["seed=0,1"], jobs))
    merged = pd.read_csv(tmp_path / "sweep" / "collected" / "t.csv")
    assert merged["seed"].tolist() == [7, 7] and merged["seed (override)"].tolist() == [0, 1]


def test_tables_of_interrupted_and_running_jobs_are_left_out(tmp_path: Path) -> None:
    """SIGTERM leaves `interrupted`, SIGKILL leaves `running`: their tables may be partial."""
    statuses = ["completed", "interrupted", "running"]
    jobs = {
        str(i): {"overrides": [f"seed={i}"], "status": status, "tables": {"t": pd.DataFrame({"x": [i]})}}
        for i, status in enumerate(statuses)
    }
    collected = collect_sweep(make_sweep(tmp_path, ["seed=0,1,2"], jobs))
    assert pd.read_csv(tmp_path / "sweep" / "collected" / "t.csv")["x"].tolist() == [0]
    assert "job 1 interrupted" in collected.report() and "job 2 running" in collected.report()


@pytest.mark.parametrize(
    "swept,fingerprints,marked",
    [
        # method.threshold cannot change the model: all jobs must share one fingerprint.
        ("method.threshold", ["aa", "aa", "bb"], {"2"}),
        ("method.threshold", ["aa", "aa", "aa"], set()),
        # seed may change the model: different fingerprints are expected.
        ("seed", ["aa", "bb", "cc"], set()),
        ("attack.eps", ["aa", "bb", None], {"0", "1"}),  # no majority: both marked; no fingerprint: not compared
    ],
)
def test_model_fingerprints_must_agree_where_the_sweep_keeps_the_model(
    tmp_path: Path, swept: str, fingerprints: list, marked: set
) -> None:
    jobs = {}
    for i, fp in enumerate(fingerprints):
        metrics = {"acc": 0.5} | ({"model_fingerprint": fp} if fp else {})
        jobs[str(i)] = {"overrides": [f"{swept}={i}"], "status": "completed", "metrics": metrics}
    sweep = make_sweep(tmp_path, [f"{swept}=" + ",".join(jobs)], jobs)
    found = sweep_jobs(sweep)
    assert set(model_fingerprint_conflicts(found, varying_keys(found))) == marked
    collected = collect_sweep(sweep)
    table = pd.read_csv(sweep / "collected" / "metrics.csv")
    checked = {str(j): c for j, c in zip(table["job"], table["model_check"], strict=True) if isinstance(c, str)}
    assert {j for j, c in checked.items() if c == "differs"} == marked
    assert all(f"job {j}: model_fingerprint differs" in collected.report() for j in marked)


def test_explainlab_collect_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sweep = make_sweep(tmp_path, ["seed=0,1"], {"0": {"overrides": ["seed=0"], "metrics": {"acc": 1.0}}})
    assert main([str(sweep), "--out", str(tmp_path / "elsewhere")]) == 0
    out = capsys.readouterr().out
    assert "jobs: 2 (1 no status, 1 not run)" in out and (tmp_path / "elsewhere" / "metrics.csv").is_file()
    assert main([str(tmp_path / "missing")]) == 2
    assert "no sweep folder" in capsys.readouterr().err
