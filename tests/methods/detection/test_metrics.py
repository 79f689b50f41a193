"""Detection metrics against scikit-learn and direct counts; the filter; the disjoint split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from explainlab.methods.detection import (
    DetectorInputError,
    attack_context,
    detection_metrics,
    held_out_split,
    lee_filter,
)


def test_metrics_match_direct_definitions() -> None:
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(200, generator=g, dtype=torch.float64)
    attacked = torch.randn(150, generator=g, dtype=torch.float64) + 1.0
    m = detection_metrics(clean, attacked)
    pairs = (attacked[:, None] > clean[None, :]).double().mean().item()
    assert m["auroc"] == pytest.approx(pairs, abs=1e-12)
    assert m["auroc"] == pytest.approx(roc_auc_score(np.r_[np.zeros(200), np.ones(150)], torch.cat([clean, attacked])))
    # FPR at the largest threshold that still flags >= 95% of the attacked scores.
    t = attacked.sort().values[int(np.floor(0.05 * 150))]
    assert m["fpr_at_95_tpr"] == pytest.approx((clean >= t).double().mean().item(), abs=1e-12)
    best = max(
        1 - (((clean >= s).double().mean() + (attacked < s).double().mean()) / 2).item()
        for s in torch.cat([clean, attacked, torch.tensor([float("inf")], dtype=torch.float64)])
    )
    assert m["detection_accuracy"] == pytest.approx(best, abs=1e-12)
    assert 0 < m["aupr"] <= 1


def test_metrics_refuse_small_or_nan_inputs() -> None:
    with pytest.raises(DetectorInputError, match=">= 2 clean and >= 2 attacked"):
        detection_metrics(torch.zeros(1), torch.ones(5))
    with pytest.raises(DetectorInputError, match="NaN"):
        detection_metrics(torch.tensor([0.0, float("nan")]), torch.ones(3))


def test_attack_context_and_lee_filter() -> None:
    labels = torch.tensor([0, 1, 2, 0, 1])
    clean = torch.tensor([0, 1, 2, 1, 1])  # image 3 wrong when clean
    attacked = torch.tensor([1, 1, 0, 1, 0])  # images 0, 2, 4 flipped
    ctx = attack_context(labels, clean, attacked)
    assert ctx == {"clean_accuracy": 0.8, "attack_success_rate": 0.75, "robust_accuracy": 0.2}
    assert lee_filter(labels, clean, attacked).tolist() == [True, False, True, False, True]


def test_held_out_split_is_disjoint_and_complete() -> None:
    fit, scored = held_out_split(101, 0.3, seed=5)
    assert len(set(fit.tolist()) & set(scored.tolist())) == 0
    assert sorted(fit.tolist() + scored.tolist()) == list(range(101)) and len(fit) == 30
    assert torch.equal(held_out_split(101, 0.3, seed=5)[0], fit)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        held_out_split(10, 1.0, seed=0)
