"""Beyond paper 000: is a model trained, and which family is it, from its S profile alone?

Two readings of a profile (one model's per-layer S):
- `untrained_deviation`: the mean over layers of log(S / E[S]), E[S] the Gaussian-initialisation
  expectation of `theory.expected_similarity` for that layer's kernel count and shape. Needs no
  reference models: untrained layers sit at 0 up to sampling error.
- a 1-nearest-neighbour classifier (scikit-learn) over profiles resampled to a common grid of
  stretched stage positions, scored leave-one-model-out (all seeds/inits of the held-out
  architecture are held out together, so a model is never recognised by its own twin). For
  trained vs untrained it reads log(S / E[S]), which removes what the kernel shapes alone
  explain; for the family it reads log S itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

from .theory import expected_similarity

PROFILE_KEYS = ("model", "weights", "init", "seed")


def _expected(row: pd.Series) -> float:
    c, h, w = (int(v) for v in str(row["kernel_shape"]).split("x"))
    return expected_similarity(int(row["kernels"]), c, h, w)


def _analysed_with_log_ratio(table: pd.DataFrame) -> pd.DataFrame:
    rows = table[table["analysed"]].copy()
    rows["log_similarity"] = np.log(rows["similarity"])
    rows["log_ratio"] = rows["log_similarity"] - np.log(rows.apply(_expected, axis=1))
    return rows


def untrained_deviation(table: pd.DataFrame) -> pd.DataFrame:
    """Per profile (model, weights, init, seed): mean log(S / E_untrained[S]) over analysed layers.

    table: tidy per-layer rows with PROFILE_KEYS, kernels, kernel_shape, similarity, analysed.
    """
    rows = _analysed_with_log_ratio(table)
    return (
        rows.groupby(list(PROFILE_KEYS), dropna=False, sort=False)["log_ratio"].mean().rename("deviation").reset_index()
    )


def profile_features(
    table: pd.DataFrame, grid: int = 24, value: str = "log_similarity"
) -> tuple[pd.DataFrame, np.ndarray]:
    """One feature vector per profile: `value` ('log_similarity' or 'log_ratio' = log(S / E[S]))
    of the analysed layers, interpolated at `grid` points over the model's stretched stage positions
    scaled to [0, 1] (column `x` of the table).

    Returns (index table with PROFILE_KEYS and family, (n_profiles, grid) features).
    """
    rows = _analysed_with_log_ratio(table)
    index, features = [], []
    points = np.linspace(0, 1, grid)
    for key, profile in rows.groupby(list(PROFILE_KEYS), dropna=False, sort=False):
        x = profile["x"].to_numpy(float)
        span = x.max() - x.min()
        x = (x - x.min()) / span if span > 0 else np.zeros_like(x)
        features.append(np.interp(points, x, profile[value].to_numpy(float)))
        index.append({**dict(zip(PROFILE_KEYS, key, strict=True)), "family": profile["family"].iloc[0]})
    return pd.DataFrame(index), np.asarray(features)


def leave_one_model_out(features: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """1-NN predictions of `labels`, each profile predicted by a classifier that saw no profile of its
    group (model). Groups whose label no other group has cannot be predicted; callers drop them."""
    if len(np.unique(groups)) < 2:
        raise ValueError("leave-one-model-out needs profiles of at least two models")
    return cross_val_predict(
        KNeighborsClassifier(n_neighbors=1), features, labels, groups=groups, cv=LeaveOneGroupOut()
    )


def fingerprint_report(table: pd.DataFrame, *, deviation_threshold: float = 0.1) -> tuple[pd.DataFrame, dict]:
    """Per-profile predictions of trained/untrained (deviation rule and 1-NN) and family (1-NN),
    with accuracies. Returns (table, {metric: value}); a task with a single class or a single model
    is reported as None."""
    index, features = profile_features(table)
    _, ratio_features = profile_features(table, value="log_ratio")
    deviation = untrained_deviation(table)
    index = index.merge(deviation, on=list(PROFILE_KEYS), how="left")
    index["trained"] = index["weights"] == "trained"
    index["trained_by_deviation"] = index["deviation"].abs() > deviation_threshold
    groups = index["model"].to_numpy()
    metrics: dict = {
        "profiles": len(index),
        "accuracy/trained_by_deviation": float((index["trained_by_deviation"] == index["trained"]).mean()),
    }
    index["trained_by_1nn"] = None
    if index["trained"].nunique() > 1 and len(np.unique(groups)) > 1:
        pred = leave_one_model_out(ratio_features, index["trained"].to_numpy(), groups)
        index["trained_by_1nn"] = pred
        metrics["accuracy/trained_by_1nn"] = float((pred == index["trained"]).mean())
    else:
        metrics["accuracy/trained_by_1nn"] = None
    # A family is only recognisable when another of its models is among the references.
    models_per_family = index.groupby("family")["model"].nunique()
    eligible = index["family"].map(models_per_family).to_numpy() > 1
    index["family_by_1nn"] = None
    if eligible.sum() and index.loc[eligible, "family"].nunique() > 1:
        pred = leave_one_model_out(features[eligible], index.loc[eligible, "family"].to_numpy(), groups[eligible])
        index.loc[eligible, "family_by_1nn"] = pred
        metrics["accuracy/family_by_1nn"] = float((pred == index.loc[eligible, "family"]).mean())
    else:
        metrics["accuracy/family_by_1nn"] = None
    return index, metrics
