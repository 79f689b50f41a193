"""Heat maps across architectures (paper 003): comparing maps (SSIM, clustering) and testing them
(region perturbation, AOPC); the attribution methods (Captum, zennit) are in `attribution` and `lrp`."""

from .perturbation import perturbation_curve, region_order
from .similarity import cluster_heatmaps, cluster_ssim, ssim_distance, ssim_matrix

__all__ = ["cluster_heatmaps", "cluster_ssim", "perturbation_curve", "region_order", "ssim_distance", "ssim_matrix"]
