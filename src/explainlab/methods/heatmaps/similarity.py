"""Comparing heat maps across models (paper 003): SSIM matrices and hierarchical clustering."""

from __future__ import annotations

import numpy as np
import torch
from scipy.cluster.hierarchy import cophenet, linkage
from scipy.spatial.distance import pdist, squareform
from torchmetrics.functional.image import structural_similarity_index_measure


def ssim_matrix(
    maps: torch.Tensor, *, data_range: float = 1.0, sigma: float = 1.5, kernel_size: int = 11
) -> torch.Tensor:
    """SSIM between every pair of 2-D heat maps (Gaussian window, Wang et al. 2004; torchmetrics).

    maps: (M, H, W), normalised to a common range of width `data_range` (e.g. [0, 1]).
    Returns (M, M) float64, symmetric, ones on the diagonal. All pairs go through one batched call.
    """
    if maps.dim() != 3:
        raise ValueError(f"expected heat maps (M, H, W), got {tuple(maps.shape)}")
    if min(maps.shape[-2:]) < kernel_size:
        raise ValueError(
            f"heat maps of {tuple(maps.shape[-2:])} are smaller than the {kernel_size}x{kernel_size} window"
        )
    m = len(maps)
    i, j = torch.triu_indices(m, m, offset=1)
    x = maps.double().unsqueeze(1)
    scores = torch.zeros(0, dtype=torch.float64)
    if len(i):
        # The per-pixel SSIM map, averaged over the positions whose whole window lies inside the image
        # (as scikit-image and Wang et al.'s reference code do; torchmetrics' own mean also counts the
        # reflected border).
        _, full = structural_similarity_index_measure(
            x[i], x[j], gaussian_kernel=True, sigma=sigma, kernel_size=kernel_size, data_range=data_range,
            reduction="none", return_full_image=True,
        )  # fmt: skip
        pad = (kernel_size - 1) // 2
        scores = full[..., pad:-pad, pad:-pad].mean((1, 2, 3))
    out = torch.eye(m, dtype=torch.float64)
    out[i, j] = out[j, i] = scores.to(out)
    return out


def ssim_distance(similarity: torch.Tensor) -> np.ndarray:
    """Condensed distance vector 1 − SSIM for scipy (diagonal dropped; clipped at 0)."""
    distance = (1 - similarity).clamp_min(0).numpy()
    np.fill_diagonal(distance, 0)
    return squareform(distance, checks=False)


def cluster_heatmaps(maps: torch.Tensor, *, method: str = "ward") -> tuple[np.ndarray, float]:
    """Ward (or any scipy method valid for Euclidean data) linkage of the flattened maps.

    Returns (linkage matrix (M − 1, 4), cophenetic correlation with the Euclidean distances)."""
    flat = maps.flatten(1).double().numpy()
    tree = linkage(flat, method=method, metric="euclidean")
    return tree, float(cophenet(tree, pdist(flat))[0])


def cluster_ssim(similarity: torch.Tensor, *, method: str = "average") -> tuple[np.ndarray, float]:
    """Average-linkage clustering of the 1 − SSIM distances. Ward is not used here: it assumes
    Euclidean distances (its merge cost is a variance increase), and 1 − SSIM is not one.

    Returns (linkage matrix, cophenetic correlation with 1 − SSIM)."""
    if method in ("ward", "centroid", "median"):
        raise ValueError(f"{method} linkage needs Euclidean distances; 1 − SSIM is not one (use average)")
    condensed = ssim_distance(similarity)
    tree = linkage(condensed, method=method)
    return tree, float(cophenet(tree, condensed)[0])
