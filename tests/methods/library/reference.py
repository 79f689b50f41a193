"""Slow, direct float64 implementations of the paper's definitions, one sample at a time."""

from __future__ import annotations

import math

import torch


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def construct(haps: torch.Tensor, threshold: float) -> list[int]:
    """Eq. 1: visit samples in order; store one iff max cosine to stored nodes < θ."""
    stored: list[torch.Tensor] = []
    index = []
    for k in range(len(haps)):
        f = unit(haps[k].flatten().double())
        sims = [float(f @ n) for n in stored]
        novel = not sims or max(sims) < threshold
        if threshold >= 1.0 and sims:
            novel = novel and max(sims) < 1.0 - 8 * torch.finfo(torch.float64).eps
        if novel:
            stored.append(f)
            index.append(k)
    return index


def links(haps: torch.Tensor, nodes: list[int], dnn_pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Eq. 2, summed sample by sample."""
    vectors = [unit(haps[i].flatten().double()) for i in nodes]
    w = torch.zeros(n_classes, len(nodes), dtype=torch.float64)
    for k in range(len(haps)):
        f = unit(haps[k].flatten().double())
        for n, v in enumerate(vectors):
            g = math.exp(-(1 - float(f @ v)) / 0.01)
            for m in range(n_classes):
                w[m, n] += g * (1.0 if m == int(dnn_pred[k]) else -1.0)
    return w


def scores(haps: torch.Tensor, train: torch.Tensor, nodes: list[int], w: torch.Tensor, top_k: int) -> torch.Tensor:
    """Eq. 3: P_m = Σ over the top_k most similar nodes (train[nodes]) of W[m, a] h_a."""
    vectors = torch.stack([unit(train[i].flatten().double()) for i in nodes])
    out = []
    for k in range(len(haps)):
        h = vectors @ unit(haps[k].flatten().double())
        order = sorted(range(len(h)), key=lambda a: -float(h[a]))[:top_k]
        out.append(torch.stack([sum(w[m, a] * h[a] for a in order) for m in range(w.shape[0])]))
    return torch.stack(out)
