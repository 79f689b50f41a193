"""Figures of the knowledge-point study (paper 002, Figs. 2-9)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from explainlab.methods.knowledge_points.image_regions import region_boxes  # noqa: E402


def sample_scatter(g: torch.Tensor, labels: torch.Tensor, directions: torch.Tensor) -> plt.Figure:
    """Projected sample features g (N, d') coloured by label, with the class directions μ_y as rays
    (3-D when d' >= 3, else 2-D). Far from the origin = confident."""
    g, labels, directions = g.numpy(), labels.numpy(), directions.numpy()
    three = g.shape[1] >= 3
    fig = plt.figure(figsize=(5.5, 5))
    ax = fig.add_subplot(projection="3d" if three else None)
    cmap = plt.get_cmap("tab10")
    reach = np.percentile(np.linalg.norm(g, axis=1), 95)
    for c in np.unique(labels):
        pts = g[labels == c]
        ax.scatter(*pts[:, : 3 if three else 2].T, s=4, color=cmap(c % 10), label=str(c), alpha=0.6)
    for c, mu in enumerate(directions):
        end = reach * mu[: 3 if three else 2]
        ax.plot(*[[0, v] for v in end], color=cmap(c % 10), lw=2)
    ax.legend(fontsize=6, markerscale=2, ncols=2)
    ax.set_title("sample features g = M f and class directions")
    fig.tight_layout()
    return fig


def points_per_layer(table: pd.DataFrame) -> plt.Figure:
    """Knowledge points and reliable ones per layer (bars), reliable ratio (line)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["n_points"], 0.4, label="knowledge points")
    ax.bar(x + 0.2, table["n_reliable"], 0.4, label="reliable")
    ax.set_xticks(x, table["layer"])
    ax.set_ylabel("regions")
    twin = ax.twinx()
    twin.plot(x, table["ratio"], color="k", marker="o", label="reliable ratio")
    twin.set_ylim(0, 1)
    twin.set_ylabel("reliable ratio")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def distill_similarity(table: pd.DataFrame) -> plt.Figure:
    """Orientation (1 − cos) and relative strength differences between each student and the teacher,
    per compared layer, before and after distillation."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, column, title in zip(axes, ("orientation_diff", "strength_diff"), ("1 − cos", "|Δ strength| / strength"),
                                 strict=True):  # fmt: skip
        for (student, stage), rows in table.groupby(["student", "stage"], sort=False):
            ax.plot(rows["layer"], rows[column], marker="o", ls="-" if stage == "trained" else ":",
                    label=f"mimics {student} ({stage})")  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def distill_points(table: pd.DataFrame) -> plt.Figure:
    """Knowledge points (all and reliable) per layer for the teacher and each student."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, column in zip(axes, ("n_points", "n_reliable"), strict=True):
        pivot = table.pivot_table(index="layer", columns="student", values=column, sort=False)
        pivot.plot.bar(ax=ax, rot=0)
        ax.set_title("knowledge points" if column == "n_points" else "reliable knowledge points")
        ax.grid(alpha=0.3, axis="y")
        ax.set_ylim(0, max(float(np.nanmax(pivot.to_numpy())), 1.0) * 1.25)  # headroom: the legend covers no bar
        ax.legend(fontsize=7, ncol=pivot.shape[1], loc="upper left")
    fig.tight_layout()
    return fig


def emergence(table: pd.DataFrame) -> plt.Figure:
    """Fig. 3 / 6-left: knowledge points and reliable ratio per layer across training epochs."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for layer, rows in table.groupby("layer", sort=False):
        rows = rows.sort_values("epoch")
        axes[0].plot(rows["epoch"], rows["n_points"], marker="o", label=layer)
        axes[1].plot(rows["epoch"], rows["ratio"], marker="o", label=layer)
    axes[0].set_ylabel("knowledge points")
    axes[1].set_ylabel("reliable ratio")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def adversarial(table: pd.DataFrame, utilities: pd.DataFrame, tau: float) -> plt.Figure:
    """Figs. 7-8: utilities p(c_ori | h_ori) of regions important for the adversarial class (histogram
    per layer), Δorientation / Δstrength per layer, and the four trajectory types."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for layer, rows in utilities.groupby("layer", sort=False):
        axes[0].hist(rows["utility"], bins=20, range=(0, 1), alpha=0.5, label=layer)
    axes[0].axvline(tau, color="grey", ls="--", lw=0.8)
    axes[0].set_xlabel("p(original class | region before the attack)")
    axes[0].set_ylabel("regions important after the attack")
    axes[0].legend(fontsize=7)
    x = np.arange(len(table))
    axes[1].bar(x - 0.2, table["delta_orientation"], 0.4, label="E cos(h_ori, h_adv)")
    twin = axes[1].twinx()
    twin.bar(x + 0.2, table["delta_strength"], 0.4, color="tab:orange", label="E(‖h_ori‖ − ‖h_adv‖)")
    axes[1].set_xticks(x, table["layer"])
    axes[1].set_ylabel("orientation (cos)")
    twin.set_ylabel("strength difference")
    axes[1].legend(fontsize=7, loc="upper left")
    twin.legend(fontsize=7, loc="upper right")
    types = table.set_index("layer")[["type1", "type2", "type3", "type4"]]
    types.plot.bar(ax=axes[2], rot=0)
    axes[2].set_ylabel("regions")
    axes[2].set_title("trajectory types", fontsize=9)
    fig.tight_layout()
    return fig


def through_layers(projected: dict[str, torch.Tensor], labels: torch.Tensor, directions: torch.Tensor,
                   images: int = 3, regions: int = 12) -> plt.Figure:  # fmt: skip
    """Fig. 4: the same regions of a few images projected in successive layers (first two projected
    coordinates; strengths scaled as for the knowledge points), one panel per image, a line per
    region from the first layer (small dot) to the last (large dot), class directions as rays."""
    layers = list(projected)
    n = min(images, len(labels))
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.8), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for i, ax in enumerate(axes[0]):
        h = torch.stack([projected[layer][i] for layer in layers])  # (L, R, d')
        strongest = h[-1].norm(dim=1).argsort(descending=True)[:regions]
        for r in strongest:
            path = h[:, r, :2].numpy()
            ax.plot(path[:, 0], path[:, 1], color="grey", lw=0.8, alpha=0.7)
            ax.scatter(path[:, 0], path[:, 1], s=np.linspace(6, 30, len(layers)), c=range(len(layers)),
                       cmap="viridis", zorder=3)  # fmt: skip
        reach = float(h[..., :2].norm(dim=-1).max())
        for c, mu in enumerate(directions.numpy()):
            ax.plot([0, reach * mu[0]], [0, reach * mu[1]], color=cmap(c % 10), lw=1.5, alpha=0.8)
        ax.set_title(f"image {i} (label {int(labels[i])}): {layers[0]} → {layers[-1]}", fontsize=8)
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def regions_on_images(images: torch.Tensor, points: torch.Tensor, reliable: torch.Tensor, predicted: torch.Tensor,
                      grid: tuple[int, int], labels: torch.Tensor, class_names: list[str] | None = None,
                      max_images: int = 8, title: str = "") -> plt.Figure:  # fmt: skip
    """Figs. 6-right / 7-left: the image regions that are knowledge points, drawn on the input images.

    images: (N, C, H, W) in [0, 1]; points, reliable: (N, R) bool; predicted: (N, R) class of each
    region; grid: (gh, gw) with R = gh·gw. A box per knowledge point in the colour of the class it
    points to: solid when reliable (the image's class), dashed otherwise.
    """
    n = min(max_images, len(images))
    boxes = region_boxes(grid, tuple(images.shape[-2:])).numpy()
    cmap = plt.get_cmap("tab10")
    names = class_names or [str(c) for c in range(int(predicted.max()) + 1 if predicted.numel() else 1)]
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.6), squeeze=False)
    for i, ax in enumerate(axes[0]):
        img = images[i].detach().float().cpu()
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy(), cmap="gray" if img.shape[0] == 1 else None,
                  extent=(0, img.shape[-1], img.shape[-2], 0))  # fmt: skip
        for r in points[i].nonzero().flatten().tolist():
            x0, y0, x1, y1 = boxes[r]
            good = bool(reliable[i, r])
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.4 if good else 0.9,
                                   ls="-" if good else "--", edgecolor=cmap(int(predicted[i, r]) % 10)))  # fmt: skip
        label = int(labels[i])
        ax.set_title(f"{names[label] if label < len(names) else label}: {int(points[i].sum())} pts, "
                     f"{int(reliable[i].sum())} reliable", fontsize=7)  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def traced_regions(traced: dict[str, torch.Tensor], classes: torch.Tensor, directions: torch.Tensor) -> plt.Figure:
    """Fig. 4: regions selected in the top layer (e.g. its reliable knowledge points) at the same grid
    positions in every layer, first two projected coordinates, coloured by the image's class, with
    the class directions as rays. traced: {layer: (M, d')} (`trace_regions`); classes: (M,)."""
    layers = list(traced)
    fig, axes = plt.subplots(1, len(layers), figsize=(3.4 * len(layers), 3.4), squeeze=False)
    cmap = plt.get_cmap("tab10")
    colours = [cmap(int(c) % 10) for c in classes]
    for ax, layer in zip(axes[0], layers, strict=True):
        h = traced[layer].detach().float().cpu()
        if len(h):
            ax.scatter(h[:, 0], h[:, 1], s=5, c=colours, alpha=0.7)
        reach = float(h[:, :2].norm(dim=1).max()) if len(h) else 1.0
        for c, mu in enumerate(directions.detach().cpu().numpy()):
            ax.plot([0, reach * mu[0]], [0, reach * mu[1]], color=cmap(c % 10), lw=1.2)
        ax.set_title(f"{layer}: {len(h)} regions", fontsize=8)
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def distill_histograms(differences: pd.DataFrame, bins: int = 40) -> plt.Figure:
    """Fig. 9 (right): histograms of 1 − cos(h_s, h_t) and ‖h_s‖ − ‖h_t‖ of corresponding projected
    regional features, one curve per student (`differences_table` rows)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, column, label in zip(axes, ("one_minus_cos", "strength_diff"), ("1 − cos(h_s, h_t)", "‖h_s‖ − ‖h_t‖"),
                                 strict=True):  # fmt: skip
        values = differences[column].to_numpy()
        edges = np.histogram_bin_edges(values, bins=bins)
        for student, rows in differences.groupby("student", sort=False):
            ax.hist(rows[column], bins=edges, histtype="step", lw=1.5, density=True, label=f"mimics {student}")
        ax.set_xlabel(label)
        ax.set_ylabel("density of regions")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    layer = ", ".join(map(str, differences["layer"].unique())) if "layer" in differences else ""
    fig.suptitle(f"students vs teacher at {layer}", fontsize=9)
    fig.tight_layout()
    return fig


def shapley_vs_importance(importance: torch.Tensor, shapley: torch.Tensor, grid: tuple[int, int],
                          correlations: torch.Tensor, images: int = 4) -> plt.Figure:  # fmt: skip
    """Fig. 5: estimated regional importance w next to the regions' Shapley values φ for a few images
    (maps on the region grid), and all (w, φ) pairs with the mean ± std of the per-image correlation.
    importance, shapley: (N, R); correlations: (N,) per-image Pearson (NaN where undefined)."""
    n = min(images, len(importance))
    fig, axes = plt.subplots(2, n + 1, figsize=(2.2 * (n + 1), 4.4), squeeze=False)
    for i in range(n):
        for row, (values, name) in enumerate(((importance[i], "w"), (shapley[i], "φ"))):
            ax = axes[row, i]
            ax.imshow(values.detach().float().cpu().reshape(grid).numpy(), cmap="viridis")
            suffix = f" (r={float(correlations[i]):.2f})" if row == 0 else ""
            ax.set_title(f"image {i}: {name}{suffix}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    gs = axes[0, n].get_gridspec()
    axes[0, n].remove()
    axes[1, n].remove()
    ax = fig.add_subplot(gs[:, n])
    w = importance.detach().float().cpu().flatten().numpy()
    phi = shapley.detach().float().cpu().flatten().numpy()
    ax.scatter(w, phi, s=2, alpha=0.3)
    valid = correlations[~torch.isnan(correlations)].double()
    summary = f"{float(valid.mean()):.2f} ± {float(valid.std()):.2f}" if len(valid) > 1 else "n/a"
    ax.set_title(f"per-image corr(w, φ): {summary}", fontsize=8)
    ax.set_xlabel("importance w")
    ax.set_ylabel("Shapley value φ")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
