"""Table 1's baselines (paper 002): the softmax entropy of the DNN and the norm of a sample's
embedding under classic dimension reductions (PCA, t-SNE, LLE, Isomap; scikit-learn)."""

from __future__ import annotations

import numpy as np
import torch

EMBEDDINGS = ("pca", "tsne", "lle", "isomap")


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row of (N, C) probabilities -> (N,)."""
    return -torch.special.xlogy(probs, probs).sum(1)


def embedding_norms(features: np.ndarray, method: str, dim: int, seed: int) -> np.ndarray:
    """‖embedding − mean embedding‖ (N,) of each sample under a scikit-learn embedding of `features`
    (N, D) into `dim` dimensions; method: one of EMBEDDINGS."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE, Isomap, LocallyLinearEmbedding

    neighbours = min(10, len(features) - 1)
    model = {
        "pca": lambda: PCA(dim, random_state=seed),
        "tsne": lambda: TSNE(
            dim,
            random_state=seed,
            init="pca",
            perplexity=min(30.0, (len(features) - 1) / 3),
            method="exact" if dim > 3 else "barnes_hut",
        ),  # fmt: skip
        "lle": lambda: LocallyLinearEmbedding(n_neighbors=neighbours, n_components=dim, random_state=seed),
        "isomap": lambda: Isomap(n_neighbors=neighbours, n_components=dim),
    }[method]()
    embedded = model.fit_transform(features)
    return np.linalg.norm(embedded - embedded.mean(0), axis=1)
