"""Library networks (paper 001): construction, Hebbian prediction, confusion index, CPL."""

from explainlab.methods.library.analysis import agreement, confusion_index, consistency, cpl_tables, detection_auroc
from explainlab.methods.library.network import (
    HebbianSums,
    LibraryNetwork,
    associate_libraries,
    build_libraries,
    predict_scores_many,
)
from explainlab.methods.library.patterns import (
    FactoredHAPs,
    affine_factors,
    factorable,
    normalize_haps,
    unit_rows,
)

__all__ = [
    "FactoredHAPs",
    "HebbianSums",
    "LibraryNetwork",
    "affine_factors",
    "agreement",
    "associate_libraries",
    "build_libraries",
    "confusion_index",
    "consistency",
    "cpl_tables",
    "detection_auroc",
    "factorable",
    "normalize_haps",
    "predict_scores_many",
    "unit_rows",
]
