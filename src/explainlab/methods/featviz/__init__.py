"""Feature visualization (survey 004, Secs. 2 and 4): activation maximization with objectives,
parameterisations, regularisers, transformation robustness and diversity; model inversion."""

from .inversion import Inversion, alpha_norm, invert, representation_loss, tv_beta
from .objectives import (
    Objective,
    alignment,
    channel,
    deepdream,
    direction,
    diversity,
    gram_cosines,
    interpolate,
    log_probability,
    logit,
    logsumexp,
    neuron,
    probability,
)
from .param import ImageParam, color_correlation_sqrt, color_covariance, correlate, decorrelate, frequency_scale
from .visualize import Visualization, bilateral_filter, robustness_transforms, total_variation, visualize

__all__ = [
    "ImageParam",
    "Inversion",
    "Objective",
    "Visualization",
    "alignment",
    "alpha_norm",
    "bilateral_filter",
    "channel",
    "color_correlation_sqrt",
    "color_covariance",
    "correlate",
    "decorrelate",
    "deepdream",
    "direction",
    "diversity",
    "frequency_scale",
    "gram_cosines",
    "interpolate",
    "invert",
    "log_probability",
    "logit",
    "logsumexp",
    "neuron",
    "probability",
    "representation_loss",
    "robustness_transforms",
    "total_variation",
    "tv_beta",
    "visualize",
]
