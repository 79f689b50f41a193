"""Atomic writes and the run recorder."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from explainlab.results.io import atomic_write_text, atomic_write_with
from explainlab.results.recorder import RunRecorder


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "a.txt", "old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write_with(path, broken)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_recorder_writes_tables_figures_metrics_and_summary(tmp_path: Path) -> None:
    rec = RunRecorder(tmp_path)
    rec.save_table("scores", pd.DataFrame({"a": [1, 2]}))
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    rec.save_figure("line", fig)
    rec.log_metrics({"acc": 0.5})
    rec.log_metrics({"loss": 1.0})
    text = rec.summary("title", {"acc": 0.5})
    assert pd.read_csv(tmp_path / "results" / "scores.csv")["a"].tolist() == [1, 2]
    assert (tmp_path / "figures" / "line.png").read_bytes()[:4] == b"\x89PNG"
    assert (
        '"acc": 0.5' in (tmp_path / "metrics.json").read_text()
        and '"loss": 1.0' in (tmp_path / "metrics.json").read_text()
    )
    assert "results/scores.csv" in text and str(tmp_path)[:20] in text
