"""Merge the tables of a Hydra multirun directory into one table (and figure) per table name."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from explainlab.results.io import atomic_write_with


def job_dirs(sweep_dir: str | Path) -> list[Path]:
    """Job folders of a sweep (those holding results/), in job-number order."""
    jobs = [p for p in Path(sweep_dir).iterdir() if p.is_dir() and (p / "results").is_dir()]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def job_overrides(job: Path) -> dict[str, str]:
    """The command-line overrides of one job (from .hydra/overrides.yaml), as {key: value}."""
    path = job / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    items = yaml.safe_load(path.read_text()) or []
    return dict(item.split("=", 1) for item in items if "=" in item)


def collect(sweep_dir: str | Path, table: str) -> pd.DataFrame:
    """results/<table>.csv of every job, concatenated, with a `job` column and one column per
    override that differs between jobs (named after the override key)."""
    jobs = job_dirs(sweep_dir)
    overrides = {job: job_overrides(job) for job in jobs}
    keys = sorted({k for o in overrides.values() for k in o})
    varying = [k for k in keys if len({o.get(k) for o in overrides.values()}) > 1]
    frames = []
    for job in jobs:
        path = job / "results" / f"{table}.csv"
        if not path.is_file():
            continue
        frame = pd.read_csv(path)
        frame.insert(0, "job", job.name)
        for k in varying:
            frame[k] = overrides[job].get(k)
        frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"no job under {sweep_dir} has results/{table}.csv")
    return pd.concat(frames, ignore_index=True)


def collect_to_disk(sweep_dir: str | Path, tables: list[str], out_dir: str | Path | None = None) -> list[Path]:
    """Write <out_dir>/<table>.csv (default out_dir: <sweep_dir>/collected) and, for the library
    study's tables, the matching figure. Returns the files written."""
    from explainlab.results import library_figures

    out = Path(out_dir) if out_dir else Path(sweep_dir) / "collected"
    plots = {
        "predictions": library_figures.agreement,
        "library_sizes": library_figures.sizes,
        "auroc": library_figures.auroc,
    }
    written = []
    for table in tables:
        merged = collect(sweep_dir, table)
        written.append(atomic_write_with(out / f"{table}.csv", lambda tmp, m=merged: m.to_csv(tmp, index=False)))
        if table in plots:
            figure = plots[table](merged.drop(columns=["job"]))
            written.append(
                atomic_write_with(out / f"{table}.png", lambda tmp, f=figure: f.savefig(tmp, format="png", dpi=150))
            )
    return written
