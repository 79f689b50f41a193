"""Established detectors, taken from pytorch-ood 0.4.0 where it implements them.

msp (Hendrycks & Gimpel 2017) and energy (Liu et al. 2020) are pytorch-ood's score functions;
knn (Sun et al. 2022) is pytorch-ood's KNN fitted on the features passed in; mahalanobis (Lee et
al. 2018) is written here, batched and in float64, because it is needed per layer with the
paper's covariance (see `Mahalanobis`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pytorch_ood.detector import KNN, EnergyBased, MaxSoftmax

from explainlab.methods.detection.base import Detector, DetectorInputError, Features, LayerwiseDetector


class _LogitScore(Detector):
    """A score of the logits alone, temperature T; pytorch-ood's static `score` function."""

    needs_train = False
    feature_form = None
    formula = staticmethod(MaxSoftmax.score)

    def __init__(self, temperature: float = 1.0, layers: Sequence[str] = ()) -> None:
        super().__init__(())
        self.temperature = float(temperature)

    def _score(self, features: Features, logits: torch.Tensor | None) -> torch.Tensor:
        return self.formula(logits.double(), self.temperature)


class MSP(_LogitScore):
    """-max softmax probability of the logits / T (pytorch-ood MaxSoftmax): the baseline."""

    name = "msp"
    formula = staticmethod(MaxSoftmax.score)


class Energy(_LogitScore):
    """Energy -T logsumexp(logits / T) (pytorch-ood EnergyBased); higher = more likely OOD."""

    name = "energy"
    formula = staticmethod(EnergyBased.score)


class KNNDistance(Detector):
    """Distance to the k-th nearest clean training feature of the last layer in `layers`, features
    L2-normalised (Sun et al. 2022, Eq. 3): pytorch-ood's KNN (scikit-learn NearestNeighbors)."""

    name = "knn"

    def __init__(self, layers: Sequence[str], k: int = 50) -> None:
        super().__init__(list(layers)[-1:])
        self.k = int(k)

    def _fit(self, features: Features, logits: torch.Tensor | None, labels: torch.Tensor | None) -> None:
        z = features[self.layers[0]].double().cpu()
        if len(z) < self.k:
            raise DetectorInputError(f"knn: k={self.k} exceeds the {len(z)} training features.")
        self.knn_ = KNN(None, k=self.k).fit_features(z, torch.zeros(len(z), dtype=torch.long))

    def _score(self, features: Features, logits: torch.Tensor | None) -> torch.Tensor:
        return self.knn_.predict_features(features[self.layers[0]].double().cpu())


class Mahalanobis(LayerwiseDetector):
    """Lee et al. 2018, Eq. 2 per layer: class means μ_c and one tied covariance Σ of the clean
    training features (labels = true classes), score = min_c (x - μ_c)^T Σ^+ (x - μ_c).

    Σ = (1/N) Σ_c Σ_{y_i = c} (x_i - μ_c)(x_i - μ_c)^T as in the paper (pytorch-ood's Mahalanobis
    leaves out the 1/N and adds a 1e-6 ridge: the same ranking per layer, N times smaller scores).
    Σ^+ is the pseudo-inverse (eigenvalues below `rcond` x the largest are dropped), so dead
    channels do not blow up. Lee et al.'s input pre-processing (a gradient step) is not used.
    Layers are combined as `LayerwiseDetector` says.
    """

    name = "mahalanobis"
    needs_labels = True

    def __init__(self, layers: Sequence[str], rcond: float = 1e-10, block_size: int = 8192) -> None:
        super().__init__(layers)
        self.rcond, self.block_size = rcond, block_size

    def _fit(self, features: Features, logits: torch.Tensor | None, labels: torch.Tensor | None) -> None:
        labels = labels.cpu().long()
        n_classes = int(labels.max()) + 1
        onehot = torch.nn.functional.one_hot(labels, n_classes).double()
        counts = onehot.sum(0)
        if (counts == 0).any():
            empty = torch.nonzero(counts == 0).flatten().tolist()
            raise DetectorInputError(f"mahalanobis: classes {empty} have no training sample.")
        self.whiten_, self.means_ = {}, {}
        for layer in self.layers:
            x = features[layer].double().cpu()
            means = (onehot.T @ x) / counts[:, None]
            centred = x - means[labels]
            cov = centred.T @ centred / len(x)
            values, vectors = torch.linalg.eigh(cov)
            keep = values > self.rcond * values.max().clamp_min(1e-300)
            whiten = vectors[:, keep] / values[keep].sqrt()  # x W has identity covariance: Σ^+ = W W^T
            self.whiten_[layer], self.means_[layer] = whiten, means @ whiten

    def _layer_scores(self, features: Features) -> torch.Tensor:
        columns = []
        for layer in self.layers:
            x = features[layer]
            parts = [
                torch.cdist(x[i : i + self.block_size].double().cpu() @ self.whiten_[layer], self.means_[layer])
                .square()
                .min(1)
                .values
                for i in range(0, len(x), self.block_size)
            ]
            columns.append(torch.cat(parts))
        return torch.stack(columns, 1)
