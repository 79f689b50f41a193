"""DRPR (Law, Snell, Farahmand, Urtasun and Zemel, "Dimensionality reduction for representing the
knowledge of probabilistic models", ICLR 2019): the last baseline of paper 002's Table 1.

DRPR learns a low-dimensional embedding whose soft clustering reproduces the soft assignments Y
(N, C) of a probabilistic model (here the DNN's softmax P(y|x)). In the embedding, each cluster c is
a regular exponential-family component given by a Bregman divergence d; the cluster centres are
the Y-weighted means of the embedded points, μ_c = Σ_i y_ic g_i / Σ_i y_ic (the closed-form
maximiser for any Bregman divergence), the priors π_c = mean_i y_ic, and the predicted assignments

    ψ_ic = π_c exp(−d(g_i, μ_c)) / Σ_b π_b exp(−d(g_i, μ_b)).

The embedding minimises KL(Y ‖ Ψ), with centres and priors recomputed from every (mini-)batch.
Choices here: d = the squared Euclidean distance (isotropic Gaussians, the case the citation uses
for visualisation; a variance would only rescale g, which the map learns), and the embedding is a
linear map g = M f of the same sample feature f as our sample projection (Law et al. train a
neural network), so Table 1 compares the criteria, not the capacity of the maps.
"""

from __future__ import annotations

import torch

from explainlab.errors import check_float, check_int

from .sample_projection import initial_map, mean_kl


def drpr_log_assignments(g: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log Ψ (N, C) of embedded points g (N, d') under centres and priors taken from the targets Y
    (N, C); also returns the centres (C, d')."""
    weight = targets.sum(0)
    centres = (targets.T @ g) / weight.clamp_min(1e-12)[:, None]
    log_prior = (weight / weight.sum()).clamp_min(1e-12).log()
    sq_dist = (g[:, None, :] - centres[None]).pow(2).sum(-1)
    return torch.log_softmax(log_prior - sq_dist, dim=1), centres


class DRPR:
    """Linear DRPR embedding g = M f (Law et al. 2019; module docstring).

    dim: d'; epochs: passes over the data; batch_size: None = full batch (centres from all samples),
    else mini-batches as in the citation; lr: Adam step. After fit: M_ (d', d), centres_ (C, d')
    and log_prior_ (C,) from the whole training set, history_ (KL(Y ‖ Ψ) per epoch).
    """

    def __init__(self, dim: int = 3, *, epochs: int = 300, batch_size: int | None = None, lr: float = 0.05,
                 seed: int = 0, device: str | torch.device | None = None) -> None:  # fmt: skip
        check_int("dim", dim, minimum=1)
        check_int("epochs", epochs, minimum=0)
        check_int("batch_size", batch_size, minimum=2, optional=True)
        check_float("lr", lr, low=0.0, high=float("inf"), closed=False)
        self.dim, self.epochs, self.batch_size, self.lr = dim, epochs, batch_size, lr
        self.seed, self.device = seed, device

    def fit(self, features: torch.Tensor, probs: torch.Tensor) -> DRPR:
        """features: (N, d) sample features f; probs: (N, C) target soft assignments Y (rows sum to 1)."""
        features, probs, generator, M = initial_map(features, probs, self.dim, self.seed, self.device)
        device = features.device
        M.requires_grad_(True)
        optimizer = torch.optim.Adam([M], lr=self.lr)
        n = len(features)
        batch = self.batch_size or n
        self.history_: list[float] = []
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=generator).to(device) if batch < n else torch.arange(n, device=device)
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                if len(idx) < 2:
                    continue
                log_psi, _ = drpr_log_assignments(features[idx] @ M.T, probs[idx])
                loss = mean_kl(probs[idx], log_psi)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                self.history_.append(float(mean_kl(probs, drpr_log_assignments(features @ M.T, probs)[0])))
        self.M_ = M.detach()
        with torch.no_grad():
            _, self.centres_ = drpr_log_assignments(features @ self.M_.T, probs)
            weight = probs.sum(0)
            self.log_prior_ = (weight / weight.sum()).clamp_min(1e-12).log()
        return self

    def transform(self, features: torch.Tensor) -> torch.Tensor:
        """g = M f: (N, d) -> (N, d')."""
        return features.to(self.M_) @ self.M_.T

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        """Ψ (N, C) with the centres and priors of the training set."""
        g = self.transform(features)
        sq_dist = (g[:, None, :] - self.centres_[None]).pow(2).sum(-1)
        return torch.softmax(self.log_prior_ - sq_dist, dim=1)
