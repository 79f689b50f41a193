"""Figures of the library-network study, mirroring paper 001 (Figs. 2-5)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from explainlab.results.figures import line_label  # noqa: E402


def _per_layer_lines(ax: plt.Axes, table: pd.DataFrame, column: str, by: Sequence[str] = ()) -> None:
    for key, rows in table.groupby(["layer", *by], sort=False, dropna=False):
        rows = rows.sort_values("threshold")
        ax.plot(rows["threshold"], rows[column], marker="o", ms=3, label=line_label(key, ["layer", *by]))
    ax.set_xlabel("threshold θ")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def sizes(table: pd.DataFrame, by: Sequence[str] = ()) -> plt.Figure:
    """Library size vs θ per layer (Fig. 2A / 4A); one line per layer and value of each column in `by`."""
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    _per_layer_lines(ax, table, "size", by)
    ax.set_yscale("log")
    ax.set_ylabel("library size (nodes)")
    fig.tight_layout()
    return fig


def agreement(table: pd.DataFrame, by: Sequence[str] = ()) -> plt.Figure:
    """Top-1 and top-3 agreement with the DNN's answers vs θ per layer (Figs. 2B/C, 4B/C); one line per
    layer and value of each column in `by` (e.g. the overrides of a collected sweep)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, column, title in zip(
        axes, ("top1_agreement", "top3_agreement"), ("best answer", "three best answers"), strict=True
    ):
        _per_layer_lines(ax, table, column, by)
        ax.set_title(title)
    axes[0].set_ylabel("fraction agreeing with the DNN")
    fig.tight_layout()
    return fig


def confusion(by_layer: dict[str, torch.Tensor], classes: list[str], threshold: float) -> plt.Figure:
    """Confusion-index matrices, one panel per layer (Fig. 3); the diagonal is hidden."""
    fig, axes = plt.subplots(1, len(by_layer), figsize=(3.3 * len(by_layer), 3.3), squeeze=False)
    for ax, (layer, ci) in zip(axes[0], by_layer.items(), strict=True):
        values = ci.double().numpy().copy()
        np.fill_diagonal(values, np.nan)
        im = ax.imshow(values, cmap="magma")
        ax.set_title(f"{layer}, θ={threshold:g}", fontsize=9)
        ax.set_xticks(range(len(classes)), classes, fontsize=6, rotation=90)
        ax.set_yticks(range(len(classes)), classes, fontsize=6)
        ax.set_xlabel("possible answer")
        ax.set_ylabel("true class")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def cpl_histograms(table: pd.DataFrame) -> plt.Figure:
    """CPL of clean vs adversarial inputs for the first threshold set, one panel per eps (Fig. 5A)."""
    first = table[table.threshold_set == table.threshold_set.iloc[0]]
    clean = first[~first.is_adversarial]["cpl"]
    eps_values = sorted(first[first.is_adversarial]["eps"].unique())
    fig, axes = plt.subplots(
        1, max(1, len(eps_values)), figsize=(3.2 * max(1, len(eps_values)), 2.8), squeeze=False, sharey=True
    )
    bins = np.linspace(min(first.cpl.min(), 0), 1, 30)
    for ax, eps in zip(axes[0], eps_values, strict=False):
        ax.hist(clean, bins=bins, alpha=0.6, label="clean")
        ax.hist(first[first.eps == eps]["cpl"], bins=bins, alpha=0.6, label="PGD")
        ax.set_title(f"{first.threshold_set.iloc[0]}, eps={eps:g}", fontsize=9)
        ax.set_xlabel("CPL")
    axes[0][0].set_ylabel("inputs")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def auroc(table: pd.DataFrame, by: Sequence[str] = ()) -> plt.Figure:
    """AUROC of CPL-based detection vs eps, one line per threshold set (Fig. 5B/C) and value of each
    column in `by`; the dashed line is chance (0.5)."""
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    for key, rows in table.groupby(["threshold_set", *by], sort=False, dropna=False):
        rows = rows.sort_values("eps")
        ax.plot(rows["eps"], rows["auroc"], marker="o", ms=3, label=line_label(key, ["threshold_set", *by]))
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("PGD eps (pixels in [0, 1])")
    ax.set_ylabel("AUROC (low CPL = adversarial)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
