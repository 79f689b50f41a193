"""Regional projection of paper 002 (Sec. 3.3): importance of regions and channels (Eq. 11-12) and
the linear map h^(r) = Λ f^(r) trained with L_similarity + α · L_align (Eq. 7-10).

Regional features are the H·W positions of a conv feature map f (N, K, H, W), as (N, R, K) rows.
Sample-to-sample similarities are computed within mini-batches: P(x2|x1) and Q(x2|x1) are
distributions over the other samples x2 ≠ x1 of the batch (as in t-SNE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from explainlab.errors import check_float, check_int

from .vmf import LinearKappa, log_vmf_normaliser


def regions(feature_map: torch.Tensor) -> torch.Tensor:
    """(N, K, H, W) -> (N, R = H·W, K) regional features, row-major over positions."""
    if feature_map.dim() != 4:
        raise ValueError(f"expected a conv feature map (N, K, H, W), got {tuple(feature_map.shape)}")
    return feature_map.flatten(2).transpose(1, 2)


def _masked_log_softmax(scores: torch.Tensor) -> torch.Tensor:
    """log_softmax over x2 (dim 1) of (N1, N2) scores, excluding x2 = x1."""
    eye = torch.eye(len(scores), dtype=torch.bool, device=scores.device)
    return torch.log_softmax(scores.masked_fill(eye, float("-inf")), dim=1).masked_fill(eye, 0.0)


def dnn_similarity(logits: torch.Tensor, kappa_p: float) -> torch.Tensor:
    """P(x2|x1) ∝ exp(κ_p cos(z2, z1)) over the batch without x1 (Sec. 3.3): (N, C) -> (N, N)."""
    z = F.normalize(logits, dim=1)
    return _masked_log_softmax(kappa_p * z @ z.T).exp()


def _kl_rows(p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return (torch.xlogy(p, p) - p * log_q).sum(1).mean()


def _project_simplex_abs(x: torch.Tensor) -> torch.Tensor:
    """The paper's projection: |x| / ‖x‖₁ per row."""
    x = x.abs()
    return x / x.sum(1, keepdim=True).clamp_min(1e-12)


class RegionalImportance:
    """Per-sample region importance w (N, R) and channel importance v (N, K), Eq. 11-12.

    Q_w(x2|x1) ∝ exp(Σ_r w2^r · max_r' κ̃ Σ_k v2^k ô2^(r)_k ô1^(r')_k), ô the unit regional features;
    w2, v2 minimise KL(P(X2|X1) ‖ Q_w(X2|X1)) by gradient steps, each followed by the paper's
    projection (absolute value, L1 norm 1). Samples are processed in batches of `batch_size`, each
    against its own batch.

    kappa_tilde: κ̃ (κ' of Eq. 12), 1000 in the paper's experiments. Since ‖v‖₁ = 1, uniform channel
        weights give κ̃/K · cos, so the same κ̃ is flatter for wider layers (K = 512 for VGG-16's conv_53:
        about 2·cos; K = 16/32/64 for the CIFAR ResNets' stages: 62/31/16·cos).
    kappa_p: κ_p of P(x2|x1) ∝ exp(κ_p cos(z2, z1)) over the DNN's outputs.
    """

    def __init__(self, *, kappa_p: float = 10.0, kappa_tilde: float = 1000.0, steps: int = 50, lr: float = 0.5,
                 batch_size: int = 64) -> None:  # fmt: skip
        check_int("batch_size", batch_size, minimum=2)
        check_float("kappa_tilde", kappa_tilde, low=0.0, high=float("inf"), closed=False)
        check_float("kappa_p", kappa_p, low=0.0, high=float("inf"), closed=False)
        self.kappa_p, self.kappa_tilde = kappa_p, kappa_tilde
        self.steps, self.lr, self.batch_size = steps, lr, batch_size

    def _fit_batch(self, units: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, r, k = units.shape
        p = dnn_similarity(logits, self.kappa_p)
        w = torch.full((n, r), 1.0 / r, dtype=units.dtype, device=units.device, requires_grad=True)
        v = torch.full((n, k), 1.0 / k, dtype=units.dtype, device=units.device, requires_grad=True)
        optimizer = torch.optim.SGD([w, v], lr=self.lr)
        for _ in range(self.steps):
            # sims[x1, x2, r] = max_r' Σ_k v2_k ô2^(r)_k ô1^(r')_k
            sims = torch.einsum("brk,ask->abrs", units * v[:, None, :], units).amax(-1)
            scores = self.kappa_tilde * (sims * w[None]).sum(-1)
            loss = _kl_rows(p, _masked_log_softmax(scores))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                w.copy_(_project_simplex_abs(w))
                v.copy_(_project_simplex_abs(v))
        return w.detach(), v.detach()

    def fit_transform(self, feature_map: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feature_map: (N, K, H, W); logits: (N, C) the DNN's outputs. Returns w (N, R), v (N, K)."""
        units = regions(feature_map)
        units = F.normalize(units if units.dtype == torch.float64 else units.float(), dim=2)
        ws, vs = [], []
        for start in range(0, len(units), self.batch_size):
            batch = slice(start, start + self.batch_size)
            if len(units[batch]) < 2:  # a lone sample has no x2 to compare with: uniform importance
                ws.append(torch.full_like(units[batch][..., 0], 1.0 / units.shape[1]))
                vs.append(torch.full_like(units[batch][:, 0], 1.0 / units.shape[2]))
                continue
            with torch.enable_grad():
                w, v = self._fit_batch(units[batch], logits[batch].to(units))
            ws.append(w)
            vs.append(v)
        return torch.cat(ws), torch.cat(vs)


class RegionalProjection:
    """Λ (d' x K) with h^(r) = Λ f^(r), trained with L = L_similarity + α · L_align (Eq. 7-10).

    L_similarity: KL(P(X2|X1) ‖ Q_Λ(X2|X1)) with log Q_Λ(x2|x1) = Σ_r w2^r max_r' log p_vMF(h2^(r) |
    h1^(r') / ‖h1^(r')‖, κ(‖h2^(r)‖)) normalised over the batch (Eq. 8-9); κ(l) = l.
    L_align: −E_x Σ_r w^r cos(g, h^(r)), g the sample's projected feature (Eq. 10).
    dim: d' in {2, 3, 4} (exact vMF normalisers). After fit: Lambda_ (d', K), history_ (loss per epoch).
    """

    def __init__(self, dim: int = 3, *, alpha: float = 0.1, kappa_p: float = 10.0, epochs: int = 20,
                 batch_size: int = 64, lr: float = 0.01, seed: int = 0,
                 device: str | torch.device | None = None) -> None:  # fmt: skip
        check_int("dim", dim, minimum=2)
        check_float("alpha", alpha, low=0.0, high=float("inf"))
        check_int("batch_size", batch_size, minimum=2)
        self.dim, self.alpha, self.kappa_p, self.epochs = dim, alpha, kappa_p, epochs
        self.batch_size, self.lr, self.seed, self.device = batch_size, lr, seed, device
        self.kappa_ = LinearKappa()

    def transform(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(N, K, H, W) -> h (N, R, d')."""
        return regions(feature_map).to(self.Lambda_) @ self.Lambda_.T

    def losses(
        self, h: torch.Tensor, logits: torch.Tensor, g: torch.Tensor, w: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_similarity, L_align) of one batch: h (B, R, d'), logits (B, C), g (B, d'), w (B, R)."""
        strength = h.norm(dim=2).clamp_min(1e-12)
        unit = h / strength[..., None]
        kappa = self.kappa_(strength)
        cos = torch.einsum("brd,asd->abrs", unit, unit).amax(-1)  # [x1, x2, r]: best region r' of x1
        log_q = log_vmf_normaliser(kappa, self.dim)[None] + kappa[None] * cos
        scores = (w[None] * log_q).sum(-1)
        similarity = _kl_rows(dnn_similarity(logits, self.kappa_p), _masked_log_softmax(scores))
        align = -(w * (unit @ F.normalize(g, dim=1)[..., None]).squeeze(-1)).sum(1).mean()
        return similarity, align

    def fit(
        self, feature_map: torch.Tensor, logits: torch.Tensor, g: torch.Tensor, importance: torch.Tensor | None = None
    ) -> RegionalProjection:
        """feature_map (N, K, H, W); logits (N, C); g (N, d') sample projections; importance w (N, R)
        from RegionalImportance (uniform when None)."""
        device = self.device or feature_map.device
        dtype = feature_map.dtype if feature_map.dtype == torch.float64 else torch.float32
        f = regions(feature_map).to(device, dtype)
        n, r, k = f.shape
        w = (importance if importance is not None else torch.full((n, r), 1.0 / r)).to(device, dtype)
        logits, g = logits.to(device, dtype), g.to(device, dtype)
        generator = torch.Generator().manual_seed(self.seed)
        scale = f.norm(dim=2).mean().clamp_min(1e-12)
        Lambda = (torch.randn(self.dim, k, generator=generator, dtype=dtype) / scale).to(device).requires_grad_(True)
        optimizer = torch.optim.Adam([Lambda], lr=self.lr)
        self.history_: list[float] = []
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=generator).to(device)
            total = 0.0
            for start in range(0, n - 1, self.batch_size):
                idx = order[start : start + self.batch_size]
                if len(idx) < 2:
                    continue
                similarity, align = self.losses(f[idx] @ Lambda.T, logits[idx], g[idx], w[idx])
                loss = similarity + self.alpha * align
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            self.history_.append(total / n)
        self.Lambda_ = Lambda.detach()
        return self
