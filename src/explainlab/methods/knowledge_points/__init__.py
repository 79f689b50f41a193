"""Knowledge points (paper 002): vMF projections of sample features (g = M f) and regional features
(h = Λ f^(r)), region/channel importance, and knowledge-point counts."""

from .correlation import correlation_table, per_sample_pearson, strength_importance_correlation
from .distillation import (
    FeatureDistillationLoss,
    MimickedFeature,
    differences_table,
    distillation_claims,
    regional_feature_differences,
)
from .drpr import DRPR, drpr_log_assignments
from .image_regions import grid_shape, region_boxes, region_index_map, region_masks, trace_regions
from .points import (
    KnowledgePoints,
    calibrate_strength,
    knowledge_points,
    normalised_scales,
    point_counts,
    regional_log_posterior,
    strength_scale,
)
from .regional import RegionalImportance, RegionalProjection, dnn_similarity, regions
from .sample_projection import SampleProjection, mean_kl
from .shapley import RegionShapley
from .vmf import (
    FittedKappa,
    LinearKappa,
    kappa_from_resultant,
    log_vmf_normaliser,
    make_kappa,
    mixture_log_likelihood,
    mixture_mle,
    vmf_log_posterior,
)

__all__ = [
    "DRPR",
    "FeatureDistillationLoss",
    "FittedKappa",
    "KnowledgePoints",
    "LinearKappa",
    "MimickedFeature",
    "RegionShapley",
    "RegionalImportance",
    "RegionalProjection",
    "SampleProjection",
    "calibrate_strength",
    "correlation_table",
    "differences_table",
    "distillation_claims",
    "dnn_similarity",
    "drpr_log_assignments",
    "grid_shape",
    "kappa_from_resultant",
    "knowledge_points",
    "log_vmf_normaliser",
    "make_kappa",
    "mean_kl",
    "mixture_log_likelihood",
    "mixture_mle",
    "normalised_scales",
    "per_sample_pearson",
    "point_counts",
    "region_boxes",
    "region_index_map",
    "region_masks",
    "regional_feature_differences",
    "regional_log_posterior",
    "regions",
    "strength_importance_correlation",
    "strength_scale",
    "trace_regions",
    "vmf_log_posterior",
]
