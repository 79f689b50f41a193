"""Does the average kernel similarity rank models as their accuracy does? (paper 000, Fig. 5: "the
ranking of average kernel similarities of ResNets is roughly consistent with its model accuracy").
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats


def mean_similarity(table: pd.DataFrame, *, weights: str = "trained", column: str = "similarity",
                    analysed_only: bool = True) -> pd.Series:  # fmt: skip
    """Mean S per model over its (analysed) layers, from a `chirality.csv`-shaped table (columns model,
    weights, `column`, analysed). Returns a Series indexed by model."""
    rows = table[table["weights"] == weights]
    if analysed_only and "analysed" in rows:
        rows = rows[rows["analysed"].astype(bool)]
    if rows.empty:
        raise ValueError(f"no rows with weights={weights!r} in the table")
    return rows.groupby("model", sort=False)[column].mean()


def rank_agreement(scores: Mapping[str, float], accuracy: Mapping[str, float]) -> dict[str, object]:
    """Rank correlation between a score per model (e.g. mean S) and its accuracy.

    Returns {n, models, spearman, spearman_p, kendall, kendall_p}: Spearman's ρ and Kendall's τ-b,
    each with the exact one-sided p-value of "the score ranks the models as the accuracy does"
    (ρ over all n! pairings, enumerated for n <= 8; τ by scipy's exact distribution). With n = 4 the
    smallest p attainable is 1/24 ≈ 0.042 (ρ = τ = 1).
    """
    models = [m for m in scores if m in accuracy]
    missing = sorted(set(scores) ^ set(accuracy))
    if missing:
        raise ValueError(f"scores and accuracies must name the same models; unmatched: {missing}")
    if len(models) < 3:
        raise ValueError(f"a rank correlation needs at least 3 models, got {len(models)}")
    x = np.array([scores[m] for m in models], dtype=float)
    y = np.array([accuracy[m] for m in models], dtype=float)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("scores and accuracies must be finite")
    rho = float(stats.spearmanr(x, y)[0])
    n_resamples = np.inf if len(models) <= 8 else 100_000
    permuted = stats.permutation_test((x, y), lambda a, b: stats.spearmanr(a, b)[0], permutation_type="pairings",
                                      alternative="greater", n_resamples=n_resamples, random_state=0)  # fmt: skip
    tau = stats.kendalltau(x, y, method="exact", alternative="greater")
    return {"n": len(models), "models": models, "spearman": rho, "spearman_p": float(permuted.pvalue),
            "kendall": float(tau.statistic), "kendall_p": float(tau.pvalue)}  # fmt: skip
