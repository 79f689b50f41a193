"""Per-sample correlations over the regions of each image (paper 002, Table 2 and Fig. 5).

Table 2 reports, per layer, the Pearson correlation between the regional strength ‖h^(r)‖ and the
importance w^(r) computed within each sample (over its regions r), as mean ± std over samples;
Fig. 5 compares w^(r) with the Shapley values φ^(r) of the regions the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch


def per_sample_pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of a[i] and b[i] over the last axis for every sample i.

    a, b: (N, R). Returns (N,) in float64; NaN for a sample whose a or b is constant over its regions
    (the correlation is undefined there).
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"expected two (N, R) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] < 2:
        raise ValueError("a correlation over regions needs at least two regions per sample")
    a, b = a.double(), b.double()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("values contain NaN or inf")
    da, db = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    na, nb = da.norm(dim=1), db.norm(dim=1)
    # Rows constant up to rounding have no direction: call them undefined rather than ±1 of noise.
    flat = (na <= 1e-12 * a.abs().amax(1).clamp_min(1e-300)) | (nb <= 1e-12 * b.abs().amax(1).clamp_min(1e-300))
    corr = (da * db).sum(1) / (na * nb).clamp_min(1e-300)
    return corr.masked_fill(flat, float("nan")).clamp(-1.0, 1.0)


def strength_importance_correlation(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Table 2 per sample: Pearson(‖h^(r)‖, w^(r)) over the regions r of each image.

    h: (N, R, d') projected regional features; w: (N, R) regional importance. Returns (N,) float64.
    """
    if h.dim() != 3:
        raise ValueError(f"expected projected regional features (N, R, d'), got {tuple(h.shape)}")
    return per_sample_pearson(h.norm(dim=-1), w)


def correlation_table(per_layer: Mapping[str, torch.Tensor]) -> pd.DataFrame:
    """Tidy summary of per-sample correlations: one row per layer with columns `layer`, `mean`, `std`
    (sample standard deviation, ddof = 1) and `n` (samples whose correlation is defined, i.e. not NaN).

    per_layer: {layer: (N,) correlations, NaN where undefined}.
    """
    rows = []
    for layer, values in per_layer.items():
        v = values.double().cpu().numpy()
        v = v[~np.isnan(v)]
        rows.append(
            {
                "layer": layer,
                "mean": float(v.mean()) if len(v) else float("nan"),
                "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                "n": len(v),
            }
        )
    return pd.DataFrame(rows, columns=["layer", "mean", "std", "n"])
