"""Detectors of adversarial and out-of-distribution inputs in one shape (see `base.Detector`), a
registry by name, and the metrics a detection row reports. No Hydra or Lightning here.

>>> det = make_detector("mahalanobis", layers=["conv2", "fc1"]).fit(train_feats, train_logits, train_labels)
>>> det.score(test_feats, test_logits)  # (N,) float64, higher = more likely adversarial/OOD
"""

from __future__ import annotations

from typing import Any

from explainlab.errors import ConfigValueError
from explainlab.methods.detection.base import (
    Detector,
    DetectorInputError,
    LayerwiseDetector,
    NotFittedError,
    check_finite,
)
from explainlab.methods.detection.baselines import MSP, Energy, KNNDistance, Mahalanobis
from explainlab.methods.detection.cpl import CPL, fit_libraries
from explainlab.methods.detection.metrics import attack_context, detection_metrics, held_out_split, lee_filter
from explainlab.methods.detection.protocol import Entry, Inputs, fit_all, run_protocols
from explainlab.methods.detection.neighbours import LID, DeepKNN, knn_distances, lid_estimate

DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls for cls in (MSP, Energy, Mahalanobis, KNNDistance, DeepKNN, LID, CPL)
}


def make_detector(name: str, key: str = "method.detectors", **kwargs: Any) -> Detector:
    """The registered detector `name` built with `kwargs`; an unknown name lists the known ones."""
    if name not in DETECTORS:
        raise ConfigValueError(key, name, "one of " + ", ".join(DETECTORS))
    return DETECTORS[name](**kwargs)


__all__ = [
    "CPL",
    "DETECTORS",
    "LID",
    "MSP",
    "DeepKNN",
    "Detector",
    "DetectorInputError",
    "Energy",
    "Entry",
    "Inputs",
    "KNNDistance",
    "LayerwiseDetector",
    "Mahalanobis",
    "NotFittedError",
    "attack_context",
    "check_finite",
    "detection_metrics",
    "fit_all",
    "fit_libraries",
    "held_out_split",
    "knn_distances",
    "lee_filter",
    "lid_estimate",
    "make_detector",
    "run_protocols",
]
