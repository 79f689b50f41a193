"""Heat maps across architectures (paper 003): comparing maps (SSIM, clustering, merge order),
testing them (region perturbation / AOPC, insertion and deletion, sanity checks) and describing them
(sparsity); the attribution methods (Captum, zennit) are in `attribution` and `lrp`."""

from .clustering import (
    LINKAGES,
    cluster,
    cluster_heatmaps,
    cluster_ssim,
    clustering_table,
    merge_order,
    merge_statistics,
    ssim_distance,
)
from .perturbation import insertion_deletion, perturbation_curve, region_order
from .similarity import ssim_matrix, ssim_pairs
from .sparsity import area_above_half_max, gini_index, sparsity_table

__all__ = [
    "LINKAGES",
    "area_above_half_max",
    "cluster",
    "cluster_heatmaps",
    "cluster_ssim",
    "clustering_table",
    "gini_index",
    "insertion_deletion",
    "merge_order",
    "merge_statistics",
    "perturbation_curve",
    "region_order",
    "sparsity_table",
    "ssim_distance",
    "ssim_matrix",
    "ssim_pairs",
]
