"""Detectors written here because pytorch-ood lacks them: deep k-NN (Papernot & McDaniel 2018)
and local intrinsic dimensionality (Ma et al. 2018). Both batched: one (block, M) distance
matrix at a time, never a Python loop over samples."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from explainlab.methods.detection.base import Detector, DetectorInputError, Features, LayerwiseDetector


def knn_distances(queries: torch.Tensor, reference: torch.Tensor, k: int, *, block_size: int = 4096):
    """Euclidean distances (N, k) and indices (N, k) of each query's k nearest reference rows,
    nearest first, in float64."""
    ref = reference.double()
    dists, index = [], []
    for i in range(0, len(queries), block_size):
        d = torch.cdist(queries[i : i + block_size].double(), ref)
        values, idx = d.topk(k, dim=1, largest=False)
        dists.append(values)
        index.append(idx)
    return torch.cat(dists), torch.cat(index)


class DeepKNN(Detector):
    """Deep k-NN (Papernot & McDaniel 2018, Alg. 1): in every layer, the k nearest clean training
    features (Euclidean); nonconformity α(x, j) = Σ_layers |{neighbours whose label ≠ j}|;
    calibration nonconformities A = α(x_c, y_c) on held-out clean training samples; p_j(x) =
    |{a ∈ A: a ≥ α(x, j)}| / |A|; score = 1 - credibility = 1 - max_j p_j.

    calibration: the last `calibration` training samples (in the order given) calibrate and are
    not neighbours. Features are the pooled layer outputs (the paper used LSH on raw activations).
    """

    name = "deep_knn"
    needs_labels = True

    def __init__(self, layers: Sequence[str], k: int = 75, calibration: int = 750, block_size: int = 4096) -> None:
        super().__init__(layers)
        self.k, self.calibration, self.block_size = int(k), int(calibration), block_size

    def _neighbour_counts(self, features: Features) -> torch.Tensor:
        """(N, C) number of neighbours (over all layers) with each label."""
        counts = None
        for layer in self.layers:
            _, idx = knn_distances(features[layer].cpu(), self.train_[layer], self.k, block_size=self.block_size)
            layer_counts = torch.nn.functional.one_hot(self.train_labels_[idx], self.n_classes_).sum(1)
            counts = layer_counts if counts is None else counts + layer_counts
        return counts.double()

    def _fit(self, features: Features, logits: torch.Tensor | None, labels: torch.Tensor | None) -> None:
        labels = labels.cpu().long()
        n = len(labels)
        if n - self.calibration < self.k or self.calibration < 1:
            raise DetectorInputError(
                f"deep_knn: {n} training samples cannot give k={self.k} neighbours and "
                f"{self.calibration} calibration samples."
            )
        cut = n - self.calibration
        self.n_classes_ = int(labels.max()) + 1
        self.train_ = {layer: features[layer][:cut].double().cpu() for layer in self.layers}
        self.train_labels_ = labels[:cut]
        counts = self._neighbour_counts({layer: features[layer][cut:] for layer in self.layers})
        total = self.k * len(self.layers)
        alpha = total - counts.gather(1, labels[cut:, None]).squeeze(1)
        self.calibration_alpha_ = alpha.sort().values

    def _score(self, features: Features, logits: torch.Tensor | None) -> torch.Tensor:
        counts = self._neighbour_counts(features)
        alpha_best = self.k * len(self.layers) - counts.max(1).values  # smallest α(x, j): largest p_j
        below = torch.searchsorted(self.calibration_alpha_, alpha_best, right=False)
        credibility = (len(self.calibration_alpha_) - below).double() / len(self.calibration_alpha_)
        return 1.0 - credibility


def lid_estimate(distances: torch.Tensor) -> torch.Tensor:
    """Maximum-likelihood LID (Ma et al. 2018, Eq. 4) from (..., k) ascending neighbour distances:
    -(1/k Σ_i log(r_i / r_k))^-1."""
    logs = torch.log(distances / distances[..., -1:]).mean(-1)
    return -1.0 / logs


class LID(LayerwiseDetector):
    """Ma et al. 2018: per layer, the LID estimate of x among `n_batches` random clean minibatches
    of `batch_size` training features (k nearest, distances of exactly 0 (the point itself) left
    out), averaged over the minibatches; layers combined as `LayerwiseDetector` says.

    The paper estimates LID within the scored image's own minibatch of clean images; here the clean
    minibatches are fixed at fit time (seeded), so a score does not depend on which images are
    scored together. Features are the pooled layer outputs.
    """

    name = "lid"

    def __init__(
        self, layers: Sequence[str], k: int = 20, batch_size: int = 100, n_batches: int = 10, seed: int = 0
    ) -> None:
        super().__init__(layers)
        self.k, self.batch_size, self.n_batches, self.seed = int(k), int(batch_size), int(n_batches), int(seed)

    def _fit(self, features: Features, logits: torch.Tensor | None, labels: torch.Tensor | None) -> None:
        n = len(features[self.layers[0]])
        if self.batch_size <= self.k or n < self.batch_size:
            raise DetectorInputError(
                f"lid: needs batch_size > k and >= batch_size training samples (k={self.k}, "
                f"batch_size={self.batch_size}, {n} samples)."
            )
        g = torch.Generator().manual_seed(self.seed)
        picks = torch.stack([torch.randperm(n, generator=g)[: self.batch_size] for _ in range(self.n_batches)])
        self.reference_ = {layer: features[layer][picks.flatten()].double().cpu() for layer in self.layers}

    def _layer_scores(self, features: Features) -> torch.Tensor:
        columns = []
        for layer in self.layers:
            x, ref = features[layer], self.reference_[layer]
            parts = []
            for i in range(0, len(x), 1024):
                d = torch.cdist(x[i : i + 1024].double().cpu(), ref).view(-1, self.n_batches, self.batch_size)
                d = torch.where(d == 0, torch.full_like(d, float("inf")), d)
                nearest = d.topk(self.k, dim=-1, largest=False).values
                parts.append(lid_estimate(nearest).mean(1))
            columns.append(torch.cat(parts))
        return torch.stack(columns, 1)
