"""Sample-wise projection of paper 002 (Sec. 3.2, Eq. 4-6): a linear map g = M f into d' dimensions
whose vMF-mixture posterior Q_M(y|x) mimics the DNN's softmax P(y|x)."""

from __future__ import annotations

import torch

from explainlab.errors import check_choice, check_int

from .vmf import FittedKappa, LinearKappa, make_kappa, mixture_mle, vmf_log_posterior


def mean_kl(probs: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """E_x KL(P(·|x) ‖ Q(·|x)); probs (N, C) rows summing to 1, log_q (N, C). Terms with P = 0 count 0."""
    return (torch.xlogy(probs, probs) - probs * log_q).sum(1).mean()


def initial_map(
    features: torch.Tensor, probs: torch.Tensor, dim: int, seed: int, device: str | torch.device | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Generator, torch.Tensor]:
    """Checked inputs and the seeded starting map of a linear projection g = M f fitted to P(y|x).

    features (N, d), probs (N, C): refused unless 2-D, of one length and finite; moved to `device`
    (default: theirs) in float64 if the features are, else float32. M: (dim, d) Gaussian, scaled by
    1 / mean ‖f‖ so that ‖g‖ starts near 1. Returns (features, probs, the generator, M)."""
    if features.dim() != 2 or probs.dim() != 2 or len(features) != len(probs):
        raise ValueError(
            f"expected features (N, d) and probs (N, C), got {tuple(features.shape)}, {tuple(probs.shape)}"
        )
    if not (torch.isfinite(features).all() and torch.isfinite(probs).all()):
        raise ValueError("features or probabilities contain NaN or inf")
    device = device or features.device
    dtype = features.dtype if features.dtype == torch.float64 else torch.float32
    features, probs = features.to(device, dtype), probs.to(device, dtype)
    generator = torch.Generator().manual_seed(seed)
    scale = features.norm(dim=1).mean().clamp_min(1e-12)
    M = (torch.randn(dim, features.shape[1], generator=generator, dtype=dtype) / scale).to(device)
    return features, probs, generator, M


class SampleProjection:
    """Learn M (d' x d), class priors π and unit class directions μ so that Q_M(y|x) ≈ P(y|x).

    Alternates (i) the maximum-likelihood update of {π, μ} given g = M f (μ_y ∝ Σ_x γ_xy κ(‖g‖) g/‖g‖,
    `vmf.mixture_mle`), with class responsibilities
    `responsibilities` = 'dnn' (P(y|x): supervised, the default, keeps component y tied to class y) or
    'model' (Q_M(y|x), plain EM), refitting κ when `kappa='fitted'`; and (ii) `steps` Adam steps on M
    minimising KL(P ‖ Q_M) (Eq. 4), full batch or in mini-batches of `batch_size`.

    dim: d' (3 in the paper). kappa: 'linear' (κ(l) = l, default: the posterior is then a softmax over
    g·μ_y, smooth and well conditioned) or 'fitted' (binned vMF estimate, `vmf.FittedKappa`).
    After fit: M_ (d', d), log_prior_ (C,), directions_ (C, d'), kappa_, history_ (KL per round).
    """

    def __init__(
        self,
        dim: int = 3,
        *,
        kappa: str = "linear",
        rounds: int = 30,
        steps: int = 20,
        lr: float = 0.05,
        batch_size: int | None = None,
        responsibilities: str = "dnn",
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> None:
        check_int("dim", dim, minimum=1)
        check_choice("kappa", kappa, ("linear", "fitted"))
        check_choice("responsibilities", responsibilities, ("dnn", "model"))
        self.dim, self.kappa, self.rounds, self.steps, self.lr = dim, kappa, rounds, steps, lr
        self.batch_size, self.responsibilities, self.seed, self.device = batch_size, responsibilities, seed, device

    def transform(self, features: torch.Tensor) -> torch.Tensor:
        """g = M f: (N, d) -> (N, d')."""
        return features.to(self.M_) @ self.M_.T

    def log_proba(self, features: torch.Tensor) -> torch.Tensor:
        """log Q_M(y|x): (N, d) -> (N, C)."""
        return vmf_log_posterior(self.transform(features), self.log_prior_, self.directions_, self.kappa_)

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        return self.log_proba(features).exp()

    def score(self, features: torch.Tensor, probs: torch.Tensor) -> float:
        """Mean KL(P ‖ Q_M) in nats (lower is better)."""
        with torch.no_grad():
            return float(mean_kl(probs.to(self.M_), self.log_proba(features)))

    @torch.no_grad()
    def _update_mixture(self, features: torch.Tensor, probs: torch.Tensor) -> None:
        """Step (i): the maximum-likelihood {π, μ} given g = M f (`vmf.mixture_mle`, orientations
        weighted by κ(‖g‖)); then κ(l) refitted when it is fitted."""
        g = self.transform(features)
        resp = probs if self.responsibilities == "dnn" else self.log_proba(features).exp()
        strength = g.norm(dim=1)
        orient = g / strength.clamp_min(1e-12)[:, None]
        if isinstance(self.kappa_, FittedKappa) and not hasattr(self.kappa_, "centres_"):
            _, first = mixture_mle(g, resp, torch.ones_like)  # no κ(l) yet: orientations weighted equally
            self.kappa_.fit(strength, orient @ first.T, resp)
        self.log_prior_, self.directions_ = mixture_mle(g, resp, self.kappa_)
        if isinstance(self.kappa_, FittedKappa):
            self.kappa_.fit(strength, orient @ self.directions_.T, resp)

    def fit(self, features: torch.Tensor, probs: torch.Tensor) -> SampleProjection:
        """features: (N, d) sample features f; probs: (N, C) the DNN's P(y|x) (softmax of its logits)."""
        features, probs, generator, self.M_ = initial_map(features, probs, self.dim, self.seed, self.device)
        self.kappa_: LinearKappa | FittedKappa = make_kappa(self.kappa, self.dim)
        self._update_mixture(features, probs)
        M = self.M_.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([M], lr=self.lr)
        n = len(features)
        batch = self.batch_size or n
        self.history_: list[float] = []
        for _ in range(self.rounds):
            order = torch.randperm(n, generator=generator).to(features.device) if batch < n else None
            for step in range(self.steps):
                if order is None:
                    f, p = features, probs
                else:
                    idx = order[(step * batch) % n : (step * batch) % n + batch]
                    f, p = features[idx], probs[idx]
                log_q = vmf_log_posterior(f @ M.T, self.log_prior_, self.directions_, self.kappa_)
                loss = mean_kl(p, log_q)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            self.M_ = M.detach().clone()
            self._update_mixture(features, probs)
            self.history_.append(self.score(features, probs))
        return self
