"""Library networks (paper 001): construction, Hebbian prediction, confusion index, CPL."""

from explainlab.methods.library.network import (
    LibraryNetwork,
    associate_libraries,
    build_libraries,
    normalize_haps,
    predict_scores_many,
)

__all__ = ["LibraryNetwork", "associate_libraries", "build_libraries", "normalize_haps", "predict_scores_many"]
from explainlab.methods.library.analysis import confusion_index, consistency, detection_auroc  # noqa: E402

__all__ += ["confusion_index", "consistency", "detection_auroc"]
