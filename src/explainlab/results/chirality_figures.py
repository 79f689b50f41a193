"""Figures of the feature-chirality study, mirroring paper 000 (Figs. 3-6) plus the fingerprint."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _grid(n: int, *, width: float = 3.2, height: float = 2.6) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _finish(ax: plt.Axes, title: str, xlabel: str = "conv layer", ylabel: str = "S") -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if xlabel == "conv layer":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _band(ax: plt.Axes, rows: pd.DataFrame, x: str, label: str, **style) -> None:
    """Mean over seeds with a ±1 std band."""
    stats = rows.groupby(x)["similarity"].agg(["mean", "std"]).reset_index().fillna(0.0)
    line = ax.plot(stats[x], stats["mean"], label=label, **style)[0]
    ax.fill_between(
        stats[x], stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=line.get_color(), alpha=0.2
    )


def trained_vs_untrained(table: pd.DataFrame) -> plt.Figure:
    """Fig. 3: S per conv layer, trained vs untrained (default init, mean ± std over seeds)."""
    rows = table[table["analysed"] & (table["init"].isin(["default"]) | (table["weights"] == "trained"))]
    models = list(dict.fromkeys(rows["model"]))
    fig, axes = _grid(len(models))
    for ax, model in zip(axes, models, strict=True):
        own = rows[rows["model"] == model]
        _band(ax, own[own["weights"] == "untrained"], "position", "untrained", marker=".", ms=3)
        trained = own[own["weights"] == "trained"]
        if len(trained):
            ax.plot(trained["position"], trained["similarity"], marker=".", ms=3, label="trained")
        _finish(ax, model, ylabel="S (average kernel similarity)")
    fig.tight_layout()
    return fig


def initialisations(table: pd.DataFrame) -> plt.Figure:
    """Fig. 4: S per layer of untrained models under each initialisation (mean ± std over seeds)."""
    rows = table[(table["weights"] == "untrained") & table["analysed"]]
    models = [m for m, r in rows.groupby("model", sort=False) if r["init"].nunique() > 1] or list(
        dict.fromkeys(rows["model"])
    )
    fig, axes = _grid(len(models))
    for ax, model in zip(axes, models, strict=True):
        own = rows[rows["model"] == model]
        for init, by_init in own.groupby("init", sort=False):
            _band(ax, by_init, "position", init, marker=".", ms=3)
        _finish(ax, model)
    fig.tight_layout()
    return fig


def stage_trends(table: pd.DataFrame) -> plt.Figure:
    """Fig. 5: S against stretched stage position, models of one family overlaid (columns:
    families; rows: trained, untrained)."""
    rows = table[table["analysed"] & ((table["init"] == "default") | (table["weights"] == "trained"))]
    families = list(dict.fromkeys(rows["family"]))
    fig, axes = plt.subplots(2, len(families), figsize=(3.6 * len(families), 5.4), squeeze=False)
    for col, family in enumerate(families):
        for row, weights in enumerate(("trained", "untrained")):
            ax = axes[row, col]
            own = rows[(rows["family"] == family) & (rows["weights"] == weights)]
            for model, by_model in own.groupby("model", sort=False):
                means = by_model.groupby("x")["similarity"].mean()
                ax.plot(means.index, means.to_numpy(), marker=".", ms=3, label=model)
            if len(own):
                for boundary in range(int(own["stage"].min()), int(own["stage"].max())):
                    ax.axvline(boundary, color="grey", lw=0.5, ls=":")
                ax.legend(fontsize=7)
            ax.set_title(f"{family}, {weights}", fontsize=9)
            ax.set_xlabel("stage (layers stretched)")
            ax.set_ylabel("S")
            ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def noflip(table: pd.DataFrame) -> plt.Figure:
    """Fig. 6: S with the flip vs without it (T = identity); trained weights where available."""
    rows = table[table["analysed"] & ((table["init"] == "default") | (table["weights"] == "trained"))]
    models = list(dict.fromkeys(rows["model"]))
    fig, axes = _grid(len(models))
    for ax, model in zip(axes, models, strict=True):
        own = rows[rows["model"] == model]
        weights = "trained" if (own["weights"] == "trained").any() else "untrained"
        own = own[own["weights"] == weights].groupby("position")[["similarity", "similarity_noflip"]].mean()
        ax.plot(own.index, own["similarity"], marker=".", ms=3, label="flipped (T)")
        ax.plot(own.index, own["similarity_noflip"], marker=".", ms=3, label="not flipped")
        _finish(ax, f"{model} ({weights})")
    fig.tight_layout()
    return fig


def fingerprint(report: pd.DataFrame, threshold: float) -> plt.Figure:
    """Mean log(S / E_untrained[S]) per profile: untrained profiles sit at 0, trained ones away from it."""
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(report["model"].unique()) + 1.5))
    models = list(dict.fromkeys(report["model"]))
    for trained, rows in report.groupby("trained"):
        y = rows["model"].map({m: i for i, m in enumerate(models)}).to_numpy(float)
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(y))
        ax.scatter(rows["deviation"], y + jitter, s=14, label="trained" if trained else "untrained")
    for t in (-threshold, threshold):
        ax.axvline(t, color="grey", ls="--", lw=0.8)
    ax.set_yticks(range(len(models)), models, fontsize=7)
    ax.set_xlabel("mean log(S / E[S] of Gaussian initialisation)")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
