"""Feature chirality of convolution kernels (paper 000): average kernel similarity S(L) between
kernels and their horizontal mirror images, the commutative residual E between untrained and
trained models, and what S says about a model (stages, analytic untrained value, fingerprint)."""

from .fingerprint import fingerprint_report, profile_features, untrained_deviation
from .initialisations import INITS, conv_weights, reinitialised
from .ranking import mean_similarity, rank_agreement
from .similarity import ChiralityProfile, commutative_residual, flip_kernels, flippable_convs, kernel_similarity
from .stages import analysed_stage, layer_stages, model_family, stretched_positions
from .tables import profile_table, residual_tables
from .theory import expected_abs_cos, expected_abs_cos_flip, expected_similarity

__all__ = [
    "INITS",
    "ChiralityProfile",
    "conv_weights",
    "profile_table",
    "reinitialised",
    "residual_tables",
    "analysed_stage",
    "commutative_residual",
    "expected_abs_cos",
    "expected_abs_cos_flip",
    "expected_similarity",
    "fingerprint_report",
    "flip_kernels",
    "flippable_convs",
    "kernel_similarity",
    "layer_stages",
    "mean_similarity",
    "model_family",
    "profile_features",
    "rank_agreement",
    "stretched_positions",
    "untrained_deviation",
]
