"""CPL (paper 001, Eq. 5) as a detector: low consistency of the library networks' predictions
across layers means "adversarial". Built from `explainlab.methods.library`, nothing copied."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from explainlab.methods.detection.base import Detector, Features
from explainlab.methods.library import LibraryNetwork, consistency, predict_scores_many
from explainlab.methods.library.fitting import fit_libraries


class CPL(Detector):
    """Score = -CPL over the layers of `thresholds` ({layer: θ}); features are the library
    study's patterns (`feature_form = 'haps'`, plain or `FactoredHAPs`), logits give the DNN's
    answers the Hebbian links are made with (Eq. 2).

    top_k: nodes per prediction (the original code: 20); softmax: on each P before the cosine;
    pairs: layer pairs (None = all).
    """

    name = "cpl"
    feature_form = "haps"

    def __init__(
        self,
        thresholds: Mapping[str, float],
        top_k: int = 20,
        softmax: bool = True,
        pairs: Sequence[tuple[str, str]] | None = None,
        block_size: int = 4096,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(list(thresholds))
        if len(self.layers) < 2:
            raise ValueError("cpl needs at least two layers.")
        self.thresholds = {layer: float(t) for layer, t in thresholds.items()}
        self.top_k, self.softmax, self.pairs, self.block_size, self.device = top_k, softmax, pairs, block_size, device

    def _fit(self, features: Features, logits: torch.Tensor | None, labels: torch.Tensor | None) -> None:
        wanted = {layer: [t] for layer, t in self.thresholds.items()}
        built = fit_libraries(features, wanted, logits, block_size=self.block_size, device=self.device)
        self.libraries_ = {layer: built[(layer, t)] for layer, t in self.thresholds.items()}

    def use_libraries(self, libraries: Mapping[tuple[str, float], LibraryNetwork]) -> CPL:
        """Take already fitted libraries {(layer, θ): LibraryNetwork} (e.g. from `fit_libraries`
        for several threshold sets at once) instead of fitting."""
        self.libraries_ = {layer: libraries[(layer, t)] for layer, t in self.thresholds.items()}
        self.fitted_ = True
        return self

    def _score(self, features: Features, logits: torch.Tensor | None) -> torch.Tensor:
        by_layer = {
            layer: predict_scores_many({0: lib}, features[layer], self.top_k)[0].cpu()
            for layer, lib in self.libraries_.items()
        }
        return -consistency(by_layer, pairs=self.pairs, softmax=self.softmax)
