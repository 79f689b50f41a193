"""Figures of the heat-map study (paper 003): map grids, SSIM matrices, dendrograms, AOPC curves,
insertion/deletion curves, sparsity, and the randomisation sanity checks. The functions only draw:
trees, tables and curves come from `explainlab.methods.heatmaps`."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from scipy.cluster.hierarchy import dendrogram as scipy_dendrogram  # noqa: E402


def grid(image: torch.Tensor, maps: dict[str, dict[str, torch.Tensor]]) -> plt.Figure:
    """Rows: models; columns: the image, then one heat map per method (overlaid on the image)."""
    models = list(maps)
    methods = list(next(iter(maps.values())))
    fig, axes = plt.subplots(len(models), len(methods) + 1, figsize=(1.6 * (len(methods) + 1), 1.6 * len(models)),
                             squeeze=False)  # fmt: skip
    picture = image.permute(1, 2, 0).numpy().squeeze()
    cmap = "gray" if picture.ndim == 2 else None
    for r, model in enumerate(models):
        axes[r, 0].imshow(picture, cmap=cmap)
        axes[r, 0].set_ylabel(model, fontsize=7)
        for c, method in enumerate(methods, start=1):
            axes[r, c].imshow(picture, cmap=cmap)
            axes[r, c].imshow(maps[model][method].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if r == 0:
                axes[r, c].set_title(method, fontsize=6)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def ssim(similarity: torch.Tensor, names: list[str], method: str) -> plt.Figure:
    """Mean SSIM matrix over the images for one method."""
    fig, ax = plt.subplots(figsize=(1 + 0.5 * len(names), 0.8 + 0.5 * len(names)))
    im = ax.imshow(similarity.numpy(), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for (i, j), v in np.ndenumerate(similarity.numpy()):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < 0.5 else "k")
    ax.set_title(f"SSIM, {method}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def draw_dendrogram(tree: np.ndarray, names: list[str], title: str, *, cophenetic: float | None = None,
                    ylabel: str = "1 − SSIM") -> plt.Figure:  # fmt: skip
    """A scipy linkage tree (M − 1, 4) over `names` (e.g. `methods.heatmaps.cluster(...)`'s), with
    the cophenetic correlation in the title when given."""
    fig, ax = plt.subplots(figsize=(4.5, 3))
    scipy_dendrogram(tree, labels=names, ax=ax, leaf_rotation=90, leaf_font_size=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title if cophenetic is None else f"{title} (cophenetic r = {cophenetic:.2f})", fontsize=9)
    fig.tight_layout()
    return fig


def aopc(table: pd.DataFrame) -> plt.Figure:
    """AOPC curves per method (panels), one colour per model; solid: most relevant first, dashed:
    least relevant first, dotted: the random-order baseline."""
    methods = list(dict.fromkeys(table["method"]))
    colours = {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(table["model"]))}
    styles = {"morf": "-", "lerf": "--", "random": ":"}
    cols = min(len(methods), 4)
    rows = int(np.ceil(len(methods) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, method in zip(axes.ravel(), methods, strict=False):
        for (model, order), part in table[table["method"] == method].groupby(["model", "order"], sort=False):
            ax.plot(part["step"], part["score"], ls=styles[order], color=colours[model], label=f"{model} ({order})")
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("perturbation step")
        ax.set_ylabel("AOPC")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in axes.ravel()[len(methods) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def randomisation(table: pd.DataFrame) -> plt.Figure:
    """SSIM between the trained model's maps and those of progressively randomised copies."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for method, part in table.groupby("method", sort=False):
        mean = part.groupby("layers_randomised")["ssim"].mean()
        ax.plot(mean.index, mean.to_numpy(), marker="o", label=method)
    ax.set_xlabel("layers re-initialised (from the top)")
    ax.set_ylabel("SSIM to the trained model's maps")
    ax.set_ylim(-0.1, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def randomisation_measures(table: pd.DataFrame) -> plt.Figure:
    """Adebayo et al.'s curves from `methods.heatmaps.sanity.model_randomisation` rows: one panel per
    measure, the mean similarity to the trained model's maps against the number of layers
    randomised from the top, one line per method (solid: cascading, dashed: independent)."""
    measures = list(dict.fromkeys(table["measure"]))
    fig, axes = plt.subplots(1, len(measures), figsize=(3.3 * len(measures), 3), squeeze=False)
    colours = {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(table["method"]))}
    for ax, measure in zip(axes[0], measures, strict=True):
        part = table[table["measure"] == measure]
        for (method, order), curve in part.groupby(["method", "order"], sort=False):
            mean = curve.groupby("step")["value"].mean()
            ax.plot(mean.index, mean.to_numpy(), marker="o", ms=3, color=colours[method],
                    ls="-" if order == "cascading" else "--", label=f"{method} ({order})")  # fmt: skip
        ax.set_title(measure, fontsize=9)
        ax.set_xlabel("layers randomised (from the top)")
        ax.set_ylim(-0.2, 1.05)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("similarity to the trained maps")
    axes[0, -1].legend(fontsize=6)
    fig.tight_layout()
    return fig


def insertion_deletion(curves: pd.DataFrame) -> plt.Figure:
    """Mean insertion and deletion curves (rows: model, method, mode, step, fraction, score), one panel
    per mode, one line per (model, method)."""
    modes = list(dict.fromkeys(curves["mode"]))
    fig, axes = plt.subplots(1, len(modes), figsize=(3.6 * len(modes), 3), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        for (model, method), part in curves[curves["mode"] == mode].groupby(["model", "method"], sort=False):
            mean = part.groupby("fraction")["score"].mean()
            ax.plot(mean.index, mean.to_numpy(), label=f"{model} {method}")
        ax.set_title(mode, fontsize=9)
        ax.set_xlabel("fraction of pixels " + ("removed" if mode == "deletion" else "inserted"))
        ax.set_ylabel("score")
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=6)
    fig.tight_layout()
    return fig


def sparsity(table: pd.DataFrame, measure: str = "area_above_half_max") -> plt.Figure:
    """`methods.heatmaps.sparsity_table`'s `measure` per model (box over images), one panel per method."""
    methods = list(dict.fromkeys(table["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(0.6 * table["model"].nunique() * len(methods) + 1.5, 3),
                             squeeze=False)  # fmt: skip
    for ax, method in zip(axes[0], methods, strict=True):
        part = table[table["method"] == method]
        models = list(dict.fromkeys(part["model"]))
        ax.boxplot([part[part["model"] == m][measure].to_numpy() for m in models], tick_labels=models)
        ax.tick_params(axis="x", rotation=90, labelsize=7)
        ax.set_title(method, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(measure.replace("_", " "))
    fig.tight_layout()
    return fig
