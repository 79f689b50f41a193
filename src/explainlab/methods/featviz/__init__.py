"""Feature visualization (survey 004, Secs. 2 and 4): activation maximization with objectives,
parameterisations, regularisers, transformation robustness and diversity."""

from .objectives import Objective, channel, deepdream, direction, diversity, gram_cosines, logit, neuron, probability
from .param import ImageParam, correlate, decorrelate, frequency_scale
from .visualize import Visualization, robustness_transforms, total_variation, visualize

__all__ = [
    "ImageParam",
    "Objective",
    "Visualization",
    "channel",
    "correlate",
    "decorrelate",
    "deepdream",
    "direction",
    "diversity",
    "frequency_scale",
    "gram_cosines",
    "logit",
    "neuron",
    "probability",
    "robustness_transforms",
    "total_variation",
    "visualize",
]
