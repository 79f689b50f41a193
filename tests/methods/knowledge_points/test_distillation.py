"""Feature-regression distillation loss, the gradient stop for the head, regional differences and the
claims table."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explainlab.methods.knowledge_points import (
    FeatureDistillationLoss,
    MimickedFeature,
    differences_table,
    distillation_claims,
    regional_feature_differences,
)


class _Net(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3)))


def test_loss_terms_equal_their_formulas() -> None:
    g = torch.Generator().manual_seed(0)
    fs, ft = torch.randn(4, 3, 2, 2, generator=g), torch.randn(4, 3, 2, 2, generator=g)
    zs, zt, y = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g), torch.tensor([0, 1, 2, 3])
    only = FeatureDistillationLoss()(fs, ft, zs, y)
    assert set(only) == {"loss", "mimic"}  # feature regression only by default
    assert torch.allclose(only["loss"], ((fs.relu() - ft.relu()) ** 2).mean())
    pooled = FeatureDistillationLoss(pool=True)(fs, ft)["mimic"]
    assert torch.allclose(pooled, ((fs.relu().mean((2, 3)) - ft.relu().mean((2, 3))) ** 2).mean())
    full = FeatureDistillationLoss(mimic_weight=2.0, ce_weight=0.5, kd_weight=0.3, temperature=2.0)(fs, ft, zs, y, zt)
    p_t, log_p_s = F.softmax(zt / 2, 1), F.log_softmax(zs / 2, 1)
    kd = (p_t * (p_t.log() - log_p_s)).sum(1).mean()
    expected = 2 * only["mimic"] + 0.5 * F.cross_entropy(zs, y) + 0.3 * 4 * kd
    assert torch.allclose(full["loss"], expected, atol=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        FeatureDistillationLoss()(fs, ft[:, :2])
    with pytest.raises(ValueError, match="labels"):
        FeatureDistillationLoss(ce_weight=1.0)(fs, ft)


def test_detached_downstream_trains_only_the_head_with_cross_entropy() -> None:
    student, teacher = _Net(0), _Net(1).eval()
    x, y = torch.rand(6, 3, 5, 5), torch.randint(0, 5, (6,))
    loss_fn = FeatureDistillationLoss(mimic_weight=0.0, ce_weight=1.0)
    with torch.no_grad():
        target = teacher.body(x)
    with MimickedFeature(student, "body", detach_downstream=True) as tap:
        logits = student(x)
    loss_fn(tap.feature, target, logits, y)["loss"].backward()
    assert student.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in student.body.parameters())
    student.zero_grad()
    with MimickedFeature(student, "body", detach_downstream=True) as tap:
        logits = student(x)
    FeatureDistillationLoss()(tap.feature, target, logits, y)["loss"].backward()  # regression: the body learns
    assert student.body[0].weight.grad.abs().sum() > 0 and student.head.weight.grad is None
    with MimickedFeature(student, "body") as tap:  # without the stop, CE reaches the body
        logits = student(x)
    student.zero_grad()
    F.cross_entropy(logits, y).backward()
    assert student.body[0].weight.grad.abs().sum() > 0


def test_regional_differences_and_the_claims_table() -> None:
    g = torch.Generator().manual_seed(2)
    teacher = torch.randn(5, 4, 3, generator=g, dtype=torch.float64)
    near = teacher + 0.05 * torch.randn(5, 4, 3, generator=g, dtype=torch.float64)
    far = 1.5 * teacher + torch.randn(5, 4, 3, generator=g, dtype=torch.float64)
    diff = regional_feature_differences(far, teacher)
    n, r = 2, 3
    cos = torch.dot(far[n, r], teacher[n, r]) / (far[n, r].norm() * teacher[n, r].norm())
    assert float(diff["one_minus_cos"][n, r]) == pytest.approx(float(1 - cos))
    assert float(diff["strength_diff"][n, r]) == pytest.approx(float(far[n, r].norm() - teacher[n, r].norm()))
    table = differences_table({"near": near, "far": far}, teacher, "layer3")
    assert len(table) == 2 * 20 and set(table.columns) == {"student", "layer", "image", "region", "one_minus_cos",
                                                           "strength_diff"}  # fmt: skip
    points = pd.DataFrame(
        [{"model": m, "layer": la, "n_points": 100, "n_reliable": v}
         for m, vals in {"teacher": (50, 60, 70), "near": (40, 55, 69), "far": (30, 20, 71)}.items()
         for la, v in zip(("layer1", "layer2", "layer3"), vals, strict=True)]
    )  # fmt: skip
    claims = distillation_claims(points, table, near="near", far="far")
    assert list(claims.columns) == ["claim", "measured", "supported"] and len(claims) == 4
    assert claims["supported"].tolist() == [True, True, True, True]
    assert "layer1: 50/40/30" in claims.loc[0, "measured"] and "fewer in 5 of 6" in claims.loc[0, "measured"]
    swapped = distillation_claims(points, table, near="far", far="near")
    assert swapped["supported"].tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="lack rows"):
        distillation_claims(points[points.model != "far"], table, near="near", far="far")
