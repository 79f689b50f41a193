"""Everything a run leaves behind: config, metrics, tables, figures, and the final summary."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from explainlab.results.dashboards import publish_headline
from explainlab.results.io import atomic_write_json, atomic_write_text, atomic_write_with


class RunRecorder:
    """Writes a run's outputs atomically under `output_dir` and mirrors them to the loggers.

    Layout: config.yaml (resolved), metrics.json, results/<name>.csv, figures/<name>.png.
    loggers: Lightning loggers; figures and tables also go to TensorBoard / wandb when active.
    """

    def __init__(self, output_dir: str | Path, loggers: list[Any] | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.loggers = list(loggers or [])
        self.metrics: dict[str, Any] = {}
        self.written: list[Path] = []

    def _note(self, path: Path) -> Path:
        if path not in self.written:
            self.written.append(path)
        return path

    def save_config(self, cfg: DictConfig) -> Path:
        return self._note(atomic_write_text(self.output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True)))

    def remember(self, metrics: dict[str, Any]) -> None:
        """Merge `metrics` into those the next `log_metrics` writes (nothing is written now)."""
        self.metrics.update(metrics)

    def log_metrics(self, metrics: dict[str, Any]) -> Path:
        """Merge `metrics` into metrics.json (rewritten whole, atomically)."""
        self.metrics.update(metrics)
        return self._note(atomic_write_json(self.output_dir / "metrics.json", self.metrics))

    def save_table(self, name: str, table: pd.DataFrame) -> Path:
        """Tidy table -> results/<name>.csv; also a wandb Table when wandb is active."""
        path = self.output_dir / "results" / f"{name}.csv"
        atomic_write_with(path, lambda tmp: table.to_csv(tmp, index=False))
        for logger in self.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_table(key=f"tables/{name}", dataframe=table)
        return self._note(path)

    def save_figure(self, name: str, figure: Any, *, dpi: int = 150) -> Path:
        """Matplotlib figure -> figures/<name>.png; also logged to TensorBoard / wandb; then closed."""
        import matplotlib.pyplot as plt

        path = self.output_dir / "figures" / f"{name}.png"
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        atomic_write_with(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
        for logger in self.loggers:
            kind = type(logger).__name__
            if kind == "TensorBoardLogger":
                logger.experiment.add_figure(f"figures/{name}", figure)
            elif kind == "WandbLogger":
                logger.log_image(key=f"figures/{name}", images=[str(path)])
        plt.close(figure)
        return self._note(path)

    def _written_lines(self, per_folder: int = 8) -> list[str]:
        """Files written, relative to the run directory; a folder with many files is one line."""
        by_folder: dict[str, list[str]] = {}
        for path in sorted(self.written):
            rel = path.relative_to(self.output_dir)
            by_folder.setdefault(str(rel.parent), []).append(str(rel))
        lines = []
        for folder, files in by_folder.items():
            if len(files) > per_folder:
                lines.append(f"{folder}/ ({len(files)} files)")
            else:
                lines.extend(files)
        return lines

    def summary(self, title: str, headline: dict[str, Any], console: Console | None = None) -> str:
        """End-of-run summary: headline numbers, run directory, files written. Returns its plain text.

        On a terminal it is a table; otherwise (a pipe, a file, a batch job) plain `key: value` lines
        that never wrap a path. The plain text also goes into the run's log file, and the numbers of
        metrics.json into the dashboards (wandb summary, TensorBoard HPARAMS).
        """
        rows = [(key, f"{value:.4f}" if isinstance(value, float) else str(value)) for key, value in headline.items()]
        rows.append(("run directory", str(self.output_dir)))
        rows += [("wrote", line) for line in self._written_lines()]
        text = "\n".join([title, *(f"{key}: {value}" for key, value in rows)])
        console = console or Console()
        if console.is_terminal:
            table = Table(title=title, show_header=False, title_justify="left")
            table.add_column("key", style="bold")
            table.add_column("value", overflow="fold")
            for key, value in rows:
                table.add_row(key, value)
            console.print(table)
        else:
            console.file.write(text + "\n")
            console.file.flush()
        _write_to_log_files(text)
        publish_headline(self.loggers, self.metrics)
        return text


def _write_to_log_files(text: str) -> None:
    """Append `text` to the log files of the root logger (Hydra's `<task>.log`), not to the console."""
    record = logging.LogRecord("explainlab", logging.INFO, __file__, 0, "summary\n%s", (text,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
