"""The one shape every detector has, and the layer combination of per-layer detectors.

A detector is fitted on clean training data and scores inputs; higher scores mean "more likely
adversarial / out-of-distribution". Inputs are tensors the caller extracted once:
features {layer: (N, D)} (the form a detector asks for in `feature_form`), logits (N, C) and
labels (N,) of the training images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

Features = Mapping[str, torch.Tensor]


class NotFittedError(RuntimeError):
    """`score` was called before `fit`."""


class DetectorInputError(ValueError):
    """A detector was given inputs it cannot use (missing features, too few samples, NaN)."""


def check_finite(scores: torch.Tensor, what: str) -> torch.Tensor:
    """Refuse NaN/inf scores, naming the detector and how many; never drop them silently."""
    bad = ~torch.isfinite(scores)
    if bad.any():
        raise DetectorInputError(f"{what}: {int(bad.sum())} of {len(scores)} scores are NaN or infinite.")
    return scores


class Detector:
    """Base class. Subclasses set the class attributes and implement `_fit` and `_score`.

    needs_train: fitting reads training features/logits (False: scores from logits alone).
    needs_labels: fitting reads the training labels.
    feature_form: 'pooled' (per-channel means of conv maps, vectors as they are), 'haps' (the
        library study's flattened patterns) or None (logits only).
    combines_layers: per-layer scores combined into one (see `LayerwiseDetector`).
    """

    name: ClassVar[str] = "detector"
    needs_train: ClassVar[bool] = True
    needs_labels: ClassVar[bool] = False
    feature_form: ClassVar[str | None] = "pooled"
    combines_layers: ClassVar[bool] = False

    def __init__(self, layers: Sequence[str] = ()) -> None:
        self.layers = list(layers)
        self.fitted_ = False

    def fit(self, features: Features | None, logits: torch.Tensor | None, labels: torch.Tensor | None) -> Detector:
        """Fit on clean training data. Returns self."""
        if self.needs_train:
            self._check_features(features, "fit")
            if logits is None and self.feature_form is None:
                raise DetectorInputError(f"{self.name} needs the training logits to fit.")
        if self.needs_labels and labels is None:
            raise DetectorInputError(f"{self.name} needs the training labels to fit.")
        self._fit(features or {}, logits, labels)
        self.fitted_ = True
        return self

    def score(self, features: Features | None, logits: torch.Tensor | None) -> torch.Tensor:
        """(N,) float64 scores, higher = more likely adversarial/OOD; NaN refused."""
        if not self.fitted_:
            raise NotFittedError(f"{self.name}: call fit(...) on clean training data before score(...).")
        if self.feature_form is not None:
            self._check_features(features, "score")
        elif logits is None:
            raise DetectorInputError(f"{self.name} scores logits; none were given.")
        return check_finite(self._score(features or {}, logits).double().cpu(), self.name)

    def _check_features(self, features: Features | None, verb: str) -> None:
        if self.feature_form is None:
            return
        missing = [layer for layer in self.layers if not features or layer not in features]
        if missing:
            raise DetectorInputError(
                f"{self.name} needs {self.feature_form} features of layers {missing} to {verb}; "
                "this model/data set provides none for them."
            )

    def _fit(self, features: Features, logits: torch.Tensor | None, labels: torch.Tensor | None) -> None:
        pass

    def _score(self, features: Features, logits: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class LayerwiseDetector(Detector):
    """A detector scoring every layer separately, (N, L), and combining the columns.

    Benign-only protocol: the mean over layers of z-scores, standardised by the per-layer mean and
    standard deviation on the clean fit data (no adversarial example seen; our choice, stated in
    docs/detection.md). Supervised protocol (Lee et al. 2018, Ma et al. 2018): a logistic regression
    on held-out clean (0) and attacked (1) layer scores (`fit_combiner`).
    """

    combines_layers = True

    def layer_scores(self, features: Features, logits: torch.Tensor | None = None) -> torch.Tensor:
        """(N, L) float64 per-layer scores, columns in `self.layers` order."""
        if not self.fitted_:
            raise NotFittedError(f"{self.name}: call fit(...) before layer_scores(...).")
        self._check_features(features, "score")
        return check_finite(self._layer_scores(features).double().cpu(), f"{self.name} (per layer)")

    def fit(self, features, logits, labels) -> LayerwiseDetector:  # noqa: ANN001 - same as Detector.fit
        self.combiner_ = None
        super().fit(features, logits, labels)
        reference = self._layer_scores(features).double().cpu()
        self.center_ = reference.mean(0)
        self.scale_ = reference.std(0).clamp_min(1e-12) if len(reference) > 1 else torch.ones(reference.shape[1])
        return self

    def fit_combiner(self, clean: torch.Tensor, attacked: torch.Tensor, *, seed: int = 0) -> LayerwiseDetector:
        """Logistic regression on layer scores: clean (n0, L) labelled 0, attacked (n1, L) labelled 1."""
        if len(clean) < 2 or len(attacked) < 2:
            raise DetectorInputError(
                f"{self.name}: the supervised combination needs >= 2 clean and >= 2 attacked held-out images "
                f"(got {len(clean)} and {len(attacked)})."
            )
        x = torch.cat([clean, attacked]).double().numpy()
        y = np.r_[np.zeros(len(clean)), np.ones(len(attacked))]
        self.combiner_ = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed)).fit(x, y)
        return self

    def reset_combiner(self) -> LayerwiseDetector:
        """Back to the benign-only combination."""
        self.combiner_ = None
        return self

    def combine(self, per_layer: torch.Tensor) -> torch.Tensor:
        """(N,) scores from (N, L) layer scores: the fitted logistic regression's decision function
        (supervised) or the mean z-score (benign-only)."""
        if self.combiner_ is not None:
            return torch.from_numpy(self.combiner_.decision_function(per_layer.double().numpy()))
        return ((per_layer.double() - self.center_) / self.scale_).mean(1)

    def _score(self, features: Features, logits: torch.Tensor | None) -> torch.Tensor:
        return self.combine(check_finite(self._layer_scores(features).double().cpu(), f"{self.name} (per layer)"))

    def _layer_scores(self, features: Features) -> torch.Tensor:
        raise NotImplementedError
