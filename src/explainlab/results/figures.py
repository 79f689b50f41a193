"""Figures of the training and evaluation runs (matplotlib, headless)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def training_curves(epochs: pd.DataFrame) -> plt.Figure:
    """Loss and accuracy per epoch for train and val (columns like 'train/loss', 'val/acc')."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, metric in zip(axes, ("loss", "acc"), strict=True):
        for stage in ("train", "val"):
            col = f"{stage}/{metric}"
            if col in epochs:
                ax.plot(epochs["epoch"] + 1, epochs[col], marker="o", ms=3, label=stage)
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
