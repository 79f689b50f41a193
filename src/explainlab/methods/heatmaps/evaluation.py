"""The heat-map study's tables (paper 003), one function per table, usable from a notebook: SSIM
matrices across models, clustering and merge order per method, AOPC and insertion/deletion curves
per model, the images every model classifies correctly, and the AOPC read against its baseline.

Maps are given as {model: {method: (N, H, W)}} (`attribution.to_heatmap`'s maps in [0, 1]); every
table is tidy (one row per value) so that tables of several models concatenate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from .clustering import clustering_table
from .perturbation import insertion_deletion, perturbation_curve
from .similarity import ssim_matrix

Maps = Mapping[str, Mapping[str, torch.Tensor]]


def similarity_matrices(maps: Maps, methods: Sequence[str], *, sigma: float = 1.5, kernel_size: int | None = None,
                        gaussian: bool = True) -> dict[str, torch.Tensor]:  # fmt: skip
    """Per method the SSIM matrix across the models of every image: {method: (N, M, M)} float64, models
    in the order of `maps` (window: `similarity.ssim_matrix`)."""
    names = list(maps)
    images = len(next(iter(maps[names[0]].values())))
    options = {"sigma": sigma, "kernel_size": kernel_size, "gaussian": gaussian}
    return {
        method: torch.stack([ssim_matrix(torch.stack([maps[n][method][i] for n in names]), **options)
                             for i in range(images)])  # fmt: skip
        for method in methods
    }


def ssim_table(similarity: torch.Tensor, names: Sequence[str]) -> pd.DataFrame:
    """One (M, M) SSIM matrix as rows (model_a, model_b, ssim), all M² ordered pairs."""
    rows = [{"model_a": a, "model_b": b, "ssim": float(similarity[p, q])}
            for p, a in enumerate(names) for q, b in enumerate(names)]  # fmt: skip
    return pd.DataFrame(rows, columns=["model_a", "model_b", "ssim"])


def clusters(similarity: Mapping[str, torch.Tensor], maps: Maps, linkages: Sequence[str]) -> pd.DataFrame:
    """`clustering.clustering_table` of every method (a `method` column first): per image and on the
    mean matrix, each linkage's merge order, cophenetic correlation and 2-cluster cut. similarity:
    `similarity_matrices`' output; needs three or more models."""
    names = list(maps)
    parts = []
    for method, matrices in similarity.items():
        stacked = torch.stack([torch.stack([maps[n][method][i] for n in names]) for i in range(len(matrices))])
        part = clustering_table(matrices, names, linkages=linkages, maps=stacked)
        part.insert(0, "method", method)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def aopc_table(model: nn.Module, images: torch.Tensor, maps: Mapping[str, torch.Tensor], target: torch.Tensor, *,
               orders: Sequence[str], steps: int, patch: int, fill: str, regions: str = "grid",
               seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Region-perturbation AOPC curves (`perturbation.perturbation_curve`) of one model for each
    method's maps {method: (N, H, W)} and each order: rows (method, order, step, score), step 0 ... steps
    (every curve with the same seed: the same noise and, for 'random', the same region order)."""
    rows = []
    for method, m in maps.items():
        for order in orders:
            _, curve = perturbation_curve(model, images, m.to(images.device), target, steps=steps, patch=patch,
                                          order=order, fill=fill, regions=regions, seed=seed)  # fmt: skip
            rows += [{"method": method, "order": order, "step": k, "score": float(v)}
                     for k, v in enumerate(curve.cpu())]  # fmt: skip
    return pd.DataFrame(rows, columns=["method", "order", "step", "score"])


def insertion_deletion_tables(model: nn.Module, images: torch.Tensor, maps: Mapping[str, torch.Tensor],
                              target: torch.Tensor, *, steps: int = 32,
                              seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Petsiuk et al.'s insertion and deletion curves of one model (`perturbation.insertion_deletion`,
    each mode's default substrate: black for deletion, blur for insertion; softmax probability).
    Returns (mean curves: rows method, mode, step, fraction, score; areas: rows method, mode, image, auc)."""
    curves, areas = [], []
    for method, m in maps.items():
        for mode in ("insertion", "deletion"):
            scores, auc = insertion_deletion(model, images, m.to(images.device), target, mode=mode, steps=steps,
                                             seed=seed)  # fmt: skip
            mean = scores.mean(0).cpu()
            curves += [{"method": method, "mode": mode, "step": k, "fraction": k / steps, "score": float(v)}
                       for k, v in enumerate(mean)]  # fmt: skip
            areas += [{"method": method, "mode": mode, "image": i, "auc": float(a)} for i, a in enumerate(auc.cpu())]
    return (pd.DataFrame(curves, columns=["method", "mode", "step", "fraction", "score"]),
            pd.DataFrame(areas, columns=["method", "mode", "image", "auc"]))  # fmt: skip


def correct_everywhere(predicted: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Paper 003's round 2 keeps only the images every model classifies correctly: predicted (M, N)
    class indices of M models, labels (N,) -> bool mask (N,)."""
    if predicted.dim() != 2 or predicted.shape[1] != len(labels):
        raise ValueError(f"expected predictions (models, {len(labels)}), got {tuple(predicted.shape)}")
    return (predicted == labels.to(predicted.device)[None]).all(0)


def final_aopc(aopc: pd.DataFrame) -> pd.DataFrame:
    """The last step of every curve of an AOPC table (model, method, order, step, score) with the
    random order's score of the same model and method beside it (column `random`, NaN without one)."""
    last = aopc[aopc["step"] == aopc["step"].max()]
    random_order = last[last["order"] == "random"][["model", "method", "score"]].rename(columns={"score": "random"})
    return last.merge(random_order, on=["model", "method"], how="left")
