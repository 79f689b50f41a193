"""Figures of the detection study: AUROC vs eps per detector, ROC curves, score histograms."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from explainlab.results.figures import line_label  # noqa: E402


def _label(table: pd.DataFrame) -> pd.Series:
    sets = table["threshold_set"].fillna("").astype(str) if "threshold_set" in table else ""
    return table["detector"].astype(str) + np.where(sets != "", "[" + sets + "]", "")


def auroc_vs_eps(table: pd.DataFrame, by: Sequence[str] = ()) -> plt.Figure:
    """AUROC vs eps, one line per detector (and CPL threshold set, and value of each column in
    `by`), one panel per (protocol, filtered); dashed: chance 0.5."""
    table = table.dropna(subset=["auroc"]).assign(label=lambda t: _label(t))
    panels = list(table.groupby(["protocol", "filtered"], sort=True)) or [(("none", False), table)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False, sharey=True)
    for ax, ((protocol, filtered), rows) in zip(axes[0], panels, strict=True):
        for key, line in rows.groupby(["label", *by], sort=False, dropna=False):
            line = line.sort_values("eps")
            style = {"color": "black", "lw": 2} if str(key if not isinstance(key, tuple) else key[0]) == "msp" else {}
            ax.plot(line["eps"], line["auroc"], marker="o", ms=3, label=line_label(key, ["detector", *by]), **style)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{protocol}, {'Lee filter' if filtered else 'all images'}", fontsize=9)
        ax.set_xlabel("PGD eps (pixels in [0, 1])")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("AUROC (attacked = positive)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def roc_curves(scores: pd.DataFrame, key: str = "eps") -> plt.Figure:
    """ROC curves of every detector, one panel per eps (or outlier set: `key`), benign protocol,
    all images."""
    eps_values = list(dict.fromkeys(scores[key]))
    fig, axes = plt.subplots(1, len(eps_values), figsize=(3.4 * len(eps_values), 3.4), squeeze=False)
    for ax, eps in zip(axes[0], eps_values, strict=True):
        for name, rows in scores[scores[key] == eps].groupby("detector", sort=False):
            fpr, tpr, _ = roc_curve(rows["is_adversarial"].astype(int), rows["score"])
            ax.plot(fpr, tpr, label=name, **({"color": "black", "lw": 2} if name == "msp" else {"lw": 1.2}))
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_title(f"eps={eps:g}" if key == "eps" else str(eps), fontsize=9)
        ax.set_xlabel("false positive rate")
    axes[0][0].set_ylabel("true positive rate")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def histograms(scores: pd.DataFrame, eps: float | str | None = None, key: str = "eps") -> plt.Figure:
    """Clean vs attacked scores of each detector at one eps (default: the largest) or outlier set
    (`key='outliers'`, default: the first)."""
    eps = (max(scores[key]) if key == "eps" else scores[key].iloc[0]) if eps is None else eps
    shown = scores[scores[key] == eps]
    other = f"PGD eps={eps:g}" if key == "eps" else str(eps)
    names = list(dict.fromkeys(shown["detector"]))
    cols = min(4, len(names))
    rows_n = -(-len(names) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 2.6 * rows_n), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        rows = shown[shown.detector == name]
        bins = np.histogram_bin_edges(rows["score"], bins=30)
        ax.hist(rows[~rows.is_adversarial]["score"], bins=bins, alpha=0.6, label="clean")
        ax.hist(rows[rows.is_adversarial]["score"], bins=bins, alpha=0.6, label=other)
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig
