"""The two protocols on the same clean and attacked images, with and without Lee et al.'s filter.

benign: every detector fitted on clean training data only (the realistic setting, and CPL's).
supervised: detectors that combine layers refit that combination by logistic regression on a
    held-out part of the scored images (clean and attacked versions of the same images), as Lee et
    al. 2018 and Ma et al. 2018 do; every detector is then read on the other, disjoint part.
"""

from __future__ import annotations

import logging
import time
from math import nan
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from explainlab.methods.detection.base import Detector, DetectorInputError, LayerwiseDetector
from explainlab.methods.detection.metrics import attack_context, detection_metrics, held_out_split, lee_filter

log = logging.getLogger(__name__)
_CONTEXT = ("attack_success_rate", "robust_accuracy", "clean_accuracy")


@dataclass
class Inputs:
    """What detectors read of N images: features {form: {layer: (N, D)}} and logits (N, C)."""

    features: dict[str, Mapping[str, Any]]
    logits: torch.Tensor
    labels: torch.Tensor | None = None

    def for_detector(self, detector: Detector) -> tuple[Mapping[str, Any] | None, torch.Tensor]:
        if detector.feature_form is None:
            return None, self.logits
        if detector.feature_form not in self.features:
            raise DetectorInputError(f"{detector.name} needs {detector.feature_form} features; none were extracted.")
        return self.features[detector.feature_form], self.logits


@dataclass
class Entry:
    """One configured detector: its registry name, the CPL threshold set (or ''), the object."""

    name: str
    detector: Detector
    threshold_set: str = ""
    fit_s: float = field(default=0.0)


def fit_all(entries: Sequence[Entry], train: Inputs) -> None:
    """Fit every detector on the clean training inputs; records fit_s."""
    for entry in entries:
        start = time.perf_counter()
        if not entry.detector.fitted_:
            features, logits = train.for_detector(entry.detector) if entry.detector.needs_train else (None, None)
            entry.detector.fit(features, logits, train.labels)
        entry.fit_s = time.perf_counter() - start


def _raw(detector: Detector, inputs: Inputs) -> torch.Tensor:
    """(N, L) layer scores of layer-combining detectors, else (N,) scores."""
    features, logits = inputs.for_detector(detector)
    if isinstance(detector, LayerwiseDetector):
        return detector.layer_scores(features, logits)
    return detector.score(features, logits)


def run_protocols(
    entries: Sequence[Entry],
    clean: Inputs,
    attacked: Mapping[float, Inputs],
    labels: torch.Tensor,
    *,
    protocols: Sequence[str] = ("benign", "supervised"),
    filters: Sequence[bool] = (False, True),
    held_out: float = 0.5,
    seed: int = 0,
    scenario: str = "adversarial",
    key: str = "eps",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of detection.csv and of detection_scores.csv (benign scores per image).

    clean: the N scored images; attacked: {eps: the same N images attacked}; labels: (N,) true
    classes. Fitted detectors expected (`fit_all`). A (protocol, filter) cell with fewer than 2
    images is reported with empty metrics and a note, not dropped.
    scenario 'ood': `attacked` is {outlier set name: N other images} (column `key`, e.g.
    'outliers'); no attack context (NaN) and no filter.
    """
    if scenario == "ood":
        filters = [f for f in filters if not f]
    n = len(labels)
    fit_idx, eval_idx = held_out_split(n, held_out, seed)
    clean_pred = clean.logits.argmax(1)
    rows, score_rows = [], []
    clean_raw, score_s = {}, {}
    for i, entry in enumerate(entries):
        start = time.perf_counter()
        clean_raw[i] = _raw(entry.detector, clean)
        score_s[i] = time.perf_counter() - start
    for eps, adv in attacked.items():
        adv_pred = adv.logits.argmax(1)
        context = attack_context(labels, clean_pred, adv_pred) if scenario != "ood" else dict.fromkeys(_CONTEXT, nan)
        flipped = lee_filter(labels, clean_pred, adv_pred)
        for i, entry in enumerate(entries):
            det = entry.detector
            start = time.perf_counter()
            adv_raw = _raw(det, adv)
            seconds = score_s[i] + time.perf_counter() - start
            layerwise = isinstance(det, LayerwiseDetector)
            for filtered in filters:
                keep = flipped if filtered else torch.ones(n, dtype=torch.bool)
                for protocol in protocols:
                    if protocol == "supervised":
                        scored = eval_idx[keep[eval_idx]]
                        if layerwise:
                            fit_rows = fit_idx[keep[fit_idx]]
                            try:
                                det.fit_combiner(clean_raw[i][fit_rows], adv_raw[fit_rows], seed=seed)
                            except DetectorInputError as err:
                                rows.append(_row(scenario, entry, protocol, (key, eps), filtered, context, note=str(err)))
                                continue
                    else:
                        scored = torch.nonzero(keep).flatten()
                        if layerwise:
                            det.reset_combiner()
                    c, a = clean_raw[i][scored], adv_raw[scored]
                    if layerwise:
                        c, a = det.combine(c), det.combine(a)
                    try:
                        metrics = detection_metrics(c, a)
                    except DetectorInputError as err:
                        if "NaN" in str(err):
                            raise
                        rows.append(_row(scenario, entry, protocol, (key, eps), filtered, context, note=str(err)))
                        continue
                    extra = {"n_clean": len(c), "n_adv": len(a), "fit_s": entry.fit_s, "score_s": seconds}
                    rows.append(_row(scenario, entry, protocol, (key, eps), filtered, context, **metrics, **extra))
                    if protocol == "benign" and not filtered:
                        score_rows += _scores(entry, (key, eps), c, a)
            if layerwise:
                det.reset_combiner()
    return rows, score_rows


def _row(scenario: str, entry: Entry, protocol: str, at: tuple, filtered: bool, context: dict, **values) -> dict:
    return {
        "scenario": scenario,
        "detector": entry.name,
        "protocol": protocol,
        "threshold_set": entry.threshold_set,
        at[0]: at[1],
        "filtered": filtered,
        "attack_success_rate": context["attack_success_rate"],
        "robust_accuracy": context["robust_accuracy"],
        "clean_accuracy": context["clean_accuracy"],
        "note": "",
        **values,
    }


def _scores(entry: Entry, at: tuple, clean: torch.Tensor, attacked: torch.Tensor) -> list[dict[str, Any]]:
    label = entry.name + (f"[{entry.threshold_set}]" if entry.threshold_set else "")
    return [
        {"detector": label, at[0]: at[1], "index": j, "is_adversarial": is_adv, "score": float(v)}
        for is_adv, values in ((False, clean), (True, attacked))
        for j, v in enumerate(values.tolist())
    ]
