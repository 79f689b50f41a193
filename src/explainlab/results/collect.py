"""Collect a Hydra multirun folder: every job's metrics and tables side by side, failed jobs listed.

`collect_sweep(sweep_dir)` writes `<sweep_dir>/collected/`:

- `metrics.csv`: one row per job (`job`, `status`, `error`, one column per override, every key of
  the job's metrics.json, and `model_check` where the sweep's model fingerprints are compared);
- `<table>.csv` for every `results/<table>.csv` of the jobs, concatenated, with `job` and one column
  per override that varies between jobs (`results/confusion/x.csv` -> `confusion/x.csv`);
- `<table>.png` for the tables that have a figure, with one line per layer (or threshold set, or job)
  and per value of every varying override that would otherwise fold several lines into one;
- `summary.txt`: the jobs, what varies, failed and unfinished jobs, and model-fingerprint problems.

Job status comes from the `status.json` that explainlab.sweep.SweepCallback writes when each job
starts (`running`) and ends: `completed`, `failed` (with the error); SIGTERM makes it `interrupted`
(explainlab.cli), a killed job stays `running`; `no status` means no such file (the job ran
without the callback); `not run` means multirun.yaml lists the job but it has no folder. Tables of
failed, interrupted and running jobs are left out (they may be partial); all others are used.

Model fingerprints: every job whose metrics.json holds `model_fingerprint` (a hash of the weights)
is compared with the jobs whose overrides differ only in keys that cannot change the model
(anything but the model/dataset/recipe/trainer groups and keys, `seed`, `method=` and
`experiment=`; e.g. `method.threshold`, `attack.eps`). A job whose model differs from its
siblings' gets `model_check = differs` and is named in summary.txt: the sweep did not compare
what it meant to.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from explainlab.results.io import atomic_write_text, atomic_write_with

log = logging.getLogger(__name__)

COLLECTED = "collected"
# Keys (or config groups) whose change may change a study's model; every other swept key must not.
MODEL_KEYS = ("model", "dataset", "recipe", "trainer", "seed", "method", "experiment")
MODEL_KEY_PREFIXES = ("model.", "dataset.", "recipe.", "trainer.")


# Jobs whose tables may be partial: left out of the collected tables.
UNFINISHED = ("failed", "interrupted", "running")


@dataclass
class SweepJob:
    """One job of a sweep. status: completed | failed | interrupted | running | no status | not run."""

    name: str
    path: Path | None
    overrides: dict[str, str]
    status: str
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class CollectedSweep:
    """What `collect_sweep` found and wrote."""

    sweep_dir: Path
    jobs: list[SweepJob]
    varying: list[str]
    written: list[Path]
    model_differs: dict[str, list[str]]  # job -> jobs with the same model keys but another fingerprint

    def report(self) -> str:
        """Plain-text summary: what varied, job statuses, problems, files written."""
        counts = pd.Series([j.status for j in self.jobs]).value_counts().to_dict() if self.jobs else {}
        lines = [
            f"sweep: {self.sweep_dir}",
            f"jobs: {len(self.jobs)} (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")",
            "varying: " + (", ".join(self.varying) or "nothing"),
        ]
        for job in self.jobs:
            if job.status != "completed":
                what = f": {job.error}" if job.error else ""
                lines.append(f"job {job.name} {job.status} ({overrides_text(job.overrides)}){what}")
        for job, others in self.model_differs.items():
            lines.append(
                f"job {job}: model_fingerprint differs from job(s) {', '.join(others)} although no swept key that "
                "changes the model differs (their numbers are not comparable)"
            )
        lines.append(f"collected into {self.sweep_dir / COLLECTED}")
        return "\n".join(lines)


def overrides_text(overrides: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in overrides.items()) or "no overrides"


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """["a.b=1", "+c=x"] -> {"a.b": "1", "c": "x"} (the `+`, `++`, `~` prefixes dropped)."""
    parsed = {}
    for item in items:
        if "=" in item:
            key, value = item.split("=", 1)
            parsed[key.lstrip("+~")] = value
    return parsed


def _read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _sweep_arguments(sweep_dir: Path) -> tuple[dict[str, Any], list[str]] | None:
    """(hydra config, sweep arguments: sweeper params + task overrides) of <sweep_dir>/multirun.yaml."""
    config = _read_yaml(sweep_dir / "multirun.yaml")
    if not isinstance(config, dict) or not isinstance(config.get("hydra"), dict):
        return None
    hydra_cfg = config["hydra"]
    params = [f"{k}={v}" for k, v in ((hydra_cfg.get("sweeper") or {}).get("params") or {}).items()]
    return hydra_cfg, params + list((hydra_cfg.get("overrides") or {}).get("task") or [])


def swept_keys(sweep_dir: str | Path) -> list[str] | None:
    """Keys the sweep varies (`key=a,b`, ranges, and hydra.sweeper.params), from multirun.yaml;
    None when there is no readable multirun.yaml."""
    found = _sweep_arguments(Path(sweep_dir))
    if found is None:
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(found[1])
    except Exception:
        return None
    return [o.key_or_group.lstrip("+~") for o in parsed if o.is_sweep_override()]


def expected_jobs(sweep_dir: str | Path) -> list[dict[str, str]] | None:
    """The jobs Hydra's basic sweeper makes of <sweep_dir>/multirun.yaml, in job-number order.

    None when the sweep used another sweeper or a non-default job subfolder name, or the file is missing.
    """
    found = _sweep_arguments(Path(sweep_dir))
    if found is None:
        return None
    hydra_cfg, arguments = found
    sweeper = str((hydra_cfg.get("sweeper") or {}).get("_target_", ""))
    if not sweeper.endswith("BasicSweeper") or str((hydra_cfg.get("sweep") or {}).get("subdir")) != "${hydra.job.num}":
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(arguments)
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception:  # e.g. glob sweeps over config groups: the config repository is not at hand here
        return None
    return [parse_overrides(job) for job in itertools.chain.from_iterable(batches)]


def sweep_jobs(sweep_dir: str | Path) -> list[SweepJob]:
    """Every job of the sweep: its folders (those with .hydra/, results/ or metrics.json) and the jobs
    multirun.yaml lists that have no folder, in job-number order."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep folder {sweep_dir}")
    jobs: dict[str, SweepJob] = {}
    for path in sweep_dir.iterdir():
        if not path.is_dir() or path.name == COLLECTED or path.name.startswith("."):
            continue
        if not any((path / name).exists() for name in (".hydra", "results", "metrics.json")):
            continue
        overrides = parse_overrides(_read_yaml(path / ".hydra" / "overrides.yaml") or [])
        status_file = path / "status.json"
        status = json.loads(status_file.read_text()) if status_file.is_file() else {"status": "no status"}
        metrics_file = path / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        jobs[path.name] = SweepJob(path.name, path, overrides, status["status"], status.get("error"), metrics)
    for number, overrides in enumerate(expected_jobs(sweep_dir) or []):
        if str(number) not in jobs:
            jobs[str(number)] = SweepJob(str(number), None, overrides, "not run")
    return sorted(jobs.values(), key=lambda j: (not j.name.isdigit(), int(j.name) if j.name.isdigit() else 0, j.name))


def varying_keys(jobs: Sequence[SweepJob]) -> list[str]:
    """Override keys whose value is not the same in every job (in command-line order)."""
    keys = list(dict.fromkeys(k for job in jobs for k in job.overrides))
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


def changes_model(key: str) -> bool:
    """Whether a swept key (or config group) may change the model a study uses."""
    return key in MODEL_KEYS or key.startswith(MODEL_KEY_PREFIXES)


def model_fingerprint_conflicts(jobs: Sequence[SweepJob], varying: Sequence[str]) -> dict[str, list[str]]:
    """{job: [other jobs]} for jobs whose `model_fingerprint` differs from that of jobs that agree on
    every varying key that may change the model. Jobs without a fingerprint are not compared."""
    model_keys = [k for k in varying if changes_model(k)]
    groups: dict[tuple, list[SweepJob]] = {}
    for job in jobs:
        if job.metrics.get("model_fingerprint") is not None:
            groups.setdefault(tuple(job.overrides.get(k) for k in model_keys), []).append(job)
    conflicts: dict[str, list[str]] = {}
    for members in groups.values():
        fingerprints = {str(j.metrics["model_fingerprint"]) for j in members}
        if len(fingerprints) < 2:
            continue
        # The most common fingerprint is taken as the sweep's model; the others are marked.
        counts = pd.Series([str(j.metrics["model_fingerprint"]) for j in members]).value_counts()
        majority = counts.index[0] if counts.iloc[0] > counts.iloc[1:].max() else None
        for job in members:
            if majority is None or str(job.metrics["model_fingerprint"]) != majority:
                fp = str(job.metrics["model_fingerprint"])
                conflicts[job.name] = [o.name for o in members if str(o.metrics["model_fingerprint"]) != fp]
    return conflicts


def flat_metrics(metrics: Mapping[str, Any], prefix: str = "", *, numbers_only: bool = False) -> dict[str, Any]:
    """metrics.json as one level: nested keys joined by '/', lists as JSON text; with `numbers_only`,
    only finite ints and floats (not bools), as floats."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            flat |= flat_metrics(value, f"{prefix}{key}/", numbers_only=numbers_only)
        elif not numbers_only:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[f"{prefix}{key}"] = float(value)
    return flat


def metrics_table(jobs: Sequence[SweepJob], conflicts: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """One row per job: job, status, error, its overrides, its metrics (and model_check when compared)."""
    override_keys = list(dict.fromkeys(k for job in jobs for k in job.overrides))
    compared = any("model_fingerprint" in job.metrics for job in jobs)
    rows = []
    for job in jobs:
        row: dict[str, Any] = {"job": job.name, "status": job.status, "error": job.error}
        row |= {k: job.overrides.get(k) for k in override_keys}
        row |= {k: v for k, v in flat_metrics(job.metrics).items() if k not in row}
        if compared and "model_fingerprint" in job.metrics:
            row["model_check"] = "differs" if conflicts and job.name in conflicts else "ok"
        rows.append(row)
    return pd.DataFrame(rows)


def table_names(jobs: Sequence[SweepJob]) -> list[str]:
    """Names of the results/ tables any job wrote ('epochs', 'confusion/conv1_0.7', ...)."""
    names = {
        p.relative_to(job.path / "results").with_suffix("").as_posix()
        for job in jobs
        if job.path is not None
        for p in (job.path / "results").rglob("*.csv")
    }
    return sorted(names)


def collect_table(jobs: Sequence[SweepJob], table: str, varying: Sequence[str]) -> pd.DataFrame:
    """results/<table>.csv of every finished job (not failed, interrupted or running), concatenated, with a `job` column and one
    column per varying override: named after the key, or `<key> (override)` when the jobs' table has
    a column of that name. `.attrs["override_columns"]` maps each key to its column."""
    frames = {}
    for job in jobs:
        path = job.path / "results" / f"{table}.csv" if job.path is not None else None
        if job.status in UNFINISHED or path is None or not path.is_file():
            continue
        frames[job.name] = pd.read_csv(path)
    if not frames:
        raise FileNotFoundError(f"no job has results/{table}.csv")
    own_columns = set().union(*(f.columns for f in frames.values()))
    columns = {key: key if key not in own_columns else f"{key} (override)" for key in varying}
    overrides = {job.name: job.overrides for job in jobs}
    for name, frame in frames.items():
        frame.insert(0, "job", name)
        for key, column in columns.items():
            frame[column] = overrides[name].get(key)
    merged = pd.concat(frames.values(), ignore_index=True)
    merged.attrs["override_columns"] = columns
    return merged


def split_keys(
    table: pd.DataFrame, candidates: Sequence[str], within: Sequence[str], values: Sequence[str] = ()
) -> list[str]:
    """The candidate columns that take several values at one point of `within` (say one layer and θ)
    where the plotted `values` differ too: lines must be split by them, or they zig-zag between the
    values. (A key that leaves the values alike, such as top_k for library sizes, splits nothing.)"""
    within = [c for c in within if c in table.columns]
    values = [c for c in values if c in table.columns]
    grouped = table.groupby(within, dropna=False)
    differs = (grouped[values].nunique(dropna=False) > 1).any(axis=1) if values else True
    return [k for k in candidates if k in table.columns and ((grouped[k].nunique(dropna=False) > 1) & differs).any()]


def _figures() -> dict[str, tuple[Callable[..., Any], tuple[str, ...], tuple[str, ...]]]:
    """table name -> (figure function taking (table, by=...), columns locating a point, plotted columns)."""
    from explainlab.results import detection_figures, figures, library_figures

    return {
        "predictions": (library_figures.agreement, ("layer", "threshold"), ("top1_agreement", "top3_agreement")),
        "library_sizes": (library_figures.sizes, ("layer", "threshold"), ("size",)),
        "auroc": (library_figures.auroc, ("threshold_set", "eps"), ("auroc",)),
        "detection": (
            detection_figures.auroc_vs_eps,
            ("detector", "threshold_set", "protocol", "filtered", "eps"),
            ("auroc",),
        ),
        "epochs": (figures.training_curves, ("epoch",), ("train/loss", "val/loss", "train/acc", "val/acc")),
    }


def collect_sweep(sweep_dir: str | Path, out_dir: str | Path | None = None) -> CollectedSweep:
    """Write <out_dir> (default <sweep_dir>/collected): metrics.csv, every table, figures, summary.txt."""
    import matplotlib.pyplot as plt

    sweep_dir = Path(sweep_dir).resolve()
    out = Path(out_dir) if out_dir is not None else sweep_dir / COLLECTED
    jobs = sweep_jobs(sweep_dir)
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir} holds no job folders (folders with .hydra/, results/ or metrics.json)")
    varying = varying_keys(jobs)
    conflicts = model_fingerprint_conflicts(jobs, varying)
    written = []
    metrics = metrics_table(jobs, conflicts)
    written.append(atomic_write_with(out / "metrics.csv", lambda tmp: metrics.to_csv(tmp, index=False)))
    figures = _figures()
    for name in table_names(jobs):
        try:
            merged = collect_table(jobs, name, varying)
        except FileNotFoundError:  # only failed jobs wrote it
            continue
        written.append(atomic_write_with(out / f"{name}.csv", lambda tmp, m=merged: m.to_csv(tmp, index=False)))
        if name in figures:
            draw, within, values = figures[name]
            columns = list(merged.attrs["override_columns"].values())
            by = split_keys(merged, columns, within, values)
            if not by and name == "epochs" and merged["job"].nunique() > 1:
                by = ["job"]  # training curves: one pair of lines per job, e.g. repeated seeds
            shown = merged if by else merged.drop_duplicates([c for c in (*within, *values) if c in merged])
            figure = draw(shown, by=by)
            written.append(
                atomic_write_with(out / f"{name}.png", lambda tmp, f=figure: f.savefig(tmp, format="png", dpi=150))
            )
            plt.close(figure)
    collected = CollectedSweep(sweep_dir, jobs, varying, written, conflicts)
    written.append(atomic_write_text(out / "summary.txt", collected.report() + "\n"))
    for job, others in conflicts.items():
        log.warning("job %s: model_fingerprint differs from job(s) %s", job, ", ".join(others))
    return collected


def main(argv: Sequence[str] | None = None) -> int:
    """`explainlab-collect SWEEP_DIR [--out DIR]`: collect a sweep that was interrupted or run elsewhere."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="explainlab-collect",
        description="Collect a Hydra multirun folder (outputs/<task>/multiruns/<time>): metrics.csv with one row "
        "per job and its status, every results table concatenated with the varying overrides as columns, "
        "figures, summary.txt. `explainlab -m ...` does this itself when the sweep ends.",
    )
    parser.add_argument("sweep_dir", help="the sweep folder (holding multirun.yaml and one folder per job)")
    parser.add_argument("--out", default=None, help="where to write (default: SWEEP_DIR/collected)")
    args = parser.parse_args(argv)
    try:
        collected = collect_sweep(args.sweep_dir, args.out)
    except FileNotFoundError as err:
        print(f"explainlab-collect: error: {err}", file=sys.stderr)
        return 2
    print(collected.report())
    return 0
