"""The fingerprint: untrained profiles sit at the Gaussian expectation, planted trained ones do not,
and the leave-one-model-out classifier never sees the held-out model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from explainlab.methods.chirality import ChiralityProfile, fingerprint_report, untrained_deviation
from explainlab.methods.chirality.fingerprint import leave_one_model_out


def _profile_rows(model: str, weights: str, seed: int, layers: dict[str, torch.Tensor], family: str) -> pd.DataFrame:
    table = ChiralityProfile().fit_weights(layers).to_frame()
    table["x"] = np.linspace(0, 1, len(table))
    table["analysed"] = True
    table["expected_untrained"] = np.nan
    for key, value in {"model": model, "weights": weights, "init": "default", "seed": seed, "family": family}.items():
        table[key] = value
    return table


def _layers(widths: list[int], seed: int, *, symmetric: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, (c_in, c_out) in enumerate(zip([3, *widths], widths, strict=False)):
        w = torch.randn(c_out, c_in, 3, 3, generator=g)
        out[f"conv{i}"] = w + 0.8 * w.flip(-1) if symmetric else w  # planted mirror symmetry
    return out


@pytest.fixture
def table() -> pd.DataFrame:
    parts = []
    for model, widths, family in [("a1", [16, 32, 64], "A"), ("a2", [16, 16, 32, 64], "A"), ("b1", [64, 64], "B"),
                                  ("b2", [64, 64, 64], "B")]:  # fmt: skip
        for seed in range(3):
            parts.append(_profile_rows(model, "untrained", seed, _layers(widths, seed, symmetric=False), family))
        parts.append(_profile_rows(model, "trained", -1, _layers(widths, 9, symmetric=True), family))
    return pd.concat(parts, ignore_index=True)


def test_deviation_is_zero_for_gaussian_kernels_and_large_for_symmetric_ones(table: pd.DataFrame) -> None:
    deviation = untrained_deviation(table)
    untrained = deviation[deviation["weights"] == "untrained"]["deviation"]
    trained = deviation[deviation["weights"] == "trained"]["deviation"]
    assert untrained.abs().max() < 0.05 and trained.min() > 0.3


def test_fingerprint_report_scores_both_tasks(table: pd.DataFrame) -> None:
    report, metrics = fingerprint_report(table)
    assert metrics["profiles"] == 16
    assert metrics["accuracy/trained_by_deviation"] == 1.0
    assert metrics["accuracy/trained_by_1nn"] == 1.0
    assert metrics["accuracy/family_by_1nn"] is not None
    assert set(report.columns) >= {"model", "weights", "family", "deviation", "trained_by_1nn", "family_by_1nn"}


def test_leave_one_model_out_never_uses_the_held_out_model() -> None:
    # Each model's profiles are identical to each other and far from the other model's: a classifier
    # that could see the held-out model would score 1; held out, it can only answer the other label.
    features = np.array([[0.0], [0.0], [10.0], [10.0]])
    labels = np.array(["x", "x", "y", "y"])
    groups = np.array(["m1", "m1", "m2", "m2"])
    assert leave_one_model_out(features, labels, groups).tolist() == ["y", "y", "x", "x"]
    with pytest.raises(ValueError, match="two models"):
        leave_one_model_out(features, labels, np.array(["m"] * 4))
