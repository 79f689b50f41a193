"""Figures of the feature-visualization study: one row of labelled images per target."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def panel(title: str, images: dict[str, torch.Tensor]) -> plt.Figure:
    """Images (C, H, W) in [0, 1] side by side with their labels (settings, diversity, examples)."""
    n = len(images)
    cols = min(n, 8)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows + 0.3), squeeze=False)
    for ax, (label, image) in zip(axes.ravel(), images.items(), strict=False):
        picture = image.clamp(0, 1).permute(1, 2, 0).numpy().squeeze()
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(label, fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
