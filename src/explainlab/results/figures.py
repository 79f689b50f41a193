"""Figures of the training and evaluation runs (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def line_label(key: object, columns: Sequence[str]) -> str:
    """Legend text of one line of a `groupby(columns)`: the first value bare, the others as column=value."""
    values = key if isinstance(key, tuple) else (key,)
    parts = [str(values[0])] + [f"{c}={v}" for c, v in zip(columns[1:], values[1:], strict=True)]
    return ", ".join(parts)


def training_curves(epochs: pd.DataFrame, by: Sequence[str] = ()) -> plt.Figure:
    """Loss and accuracy per epoch for train and val (columns like 'train/loss', 'val/acc'); with `by`
    (e.g. the jobs or varying overrides of a collected sweep) one pair of lines per value."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    groups = epochs.groupby(list(by), sort=False, dropna=False) if by else [((), epochs)]
    for ax, metric in zip(axes, ("loss", "acc"), strict=True):
        for key, rows in groups:
            tag = ", ".join(f"{c}={v}" for c, v in zip(by, key if isinstance(key, tuple) else (key,), strict=True))
            for stage in ("train", "val"):
                col = f"{stage}/{metric}"
                if col in rows:
                    label = f"{stage}, {tag}" if tag else stage
                    ax.plot(rows["epoch"] + 1, rows[col], marker="o", ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if metric == "acc" else "cross-entropy")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(counts: np.ndarray, classes: list[str]) -> plt.Figure:
    """Row-normalised confusion matrix (rows: true class, columns: predicted class), counts annotated."""
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    size = 0.45 * len(classes) + 2
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            if counts[i, j]:
                ax.text(
                    j,
                    i,
                    int(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    return fig
