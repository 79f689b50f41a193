"""Knowledge points (paper 002): vMF projections of sample features (g = M f) and regional features
(h = Λ f^(r)), region/channel importance, and knowledge-point counts."""

from .points import KnowledgePoints, calibrate_strength, knowledge_points, regional_log_posterior, strength_scale
from .regional import RegionalImportance, RegionalProjection, dnn_similarity, regions
from .sample_projection import SampleProjection, mean_kl
from .vmf import FittedKappa, LinearKappa, kappa_from_resultant, log_vmf_normaliser, make_kappa, vmf_log_posterior

__all__ = [
    "FittedKappa",
    "KnowledgePoints",
    "LinearKappa",
    "RegionalImportance",
    "RegionalProjection",
    "SampleProjection",
    "calibrate_strength",
    "dnn_similarity",
    "kappa_from_resultant",
    "knowledge_points",
    "log_vmf_normaliser",
    "make_kappa",
    "mean_kl",
    "regional_log_posterior",
    "regions",
    "strength_scale",
    "vmf_log_posterior",
]
