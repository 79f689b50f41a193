"""Knowledge distillation as paper 002 studies it (Sec. 4, Fig. 9): a student trained to mimic one
feature of a teacher, the differences of their projected regional features, and the paper's claims
checked against measured numbers.

The paper's students learn "by distilling the output feature" of one teacher layer (conv_53 after
ReLU, or the penultimate fully-connected feature after ReLU): feature regression. Their layers after
the mimicked feature still need a classifier to be evaluated; `MimickedFeature(detach_downstream=True)`
lets cross-entropy train only those layers, so the layers up to the mimicked feature learn from
the regression alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from explainlab.errors import check_float
from explainlab.models.layers import resolve_layers


class FeatureDistillationLoss(nn.Module):
    """L = mimic_weight · MSE(relu(f_s), relu(f_t)) + ce_weight · CE(z_s, y)
    + kd_weight · T² · KL(softmax(z_t / T) ‖ softmax(z_s / T)).

    The default is feature regression only (the paper's distillation); cross-entropy and the logit
    distillation of Hinton et al. are options. relu: compare the features after ReLU (the paper
    mimics conv_53 / fc after the ReLU; idempotent on features that are already rectified).
    pool: compare spatial means of (N, K, H, W) maps, e.g. a CIFAR ResNet's penultimate feature
    (the global average of `layer3`, which ends in a ReLU).
    """

    def __init__(self, *, mimic_weight: float = 1.0, ce_weight: float = 0.0, kd_weight: float = 0.0,
                 temperature: float = 4.0, relu: bool = True, pool: bool = False) -> None:  # fmt: skip
        super().__init__()
        for key, value in (("mimic_weight", mimic_weight), ("ce_weight", ce_weight), ("kd_weight", kd_weight)):
            check_float(key, value, low=0.0, high=float("inf"))
        check_float("temperature", temperature, low=0.0, high=float("inf"), closed=False)
        self.mimic_weight, self.ce_weight, self.kd_weight = mimic_weight, ce_weight, kd_weight
        self.temperature, self.relu, self.pool = temperature, relu, pool

    def target(self, feature: torch.Tensor) -> torch.Tensor:
        """The compared form of a raw layer output: ReLU'd and, with `pool`, averaged over positions."""
        feature = feature.relu() if self.relu else feature
        return feature.flatten(2).mean(2) if self.pool and feature.dim() > 2 else feature

    def forward(
        self,
        student_feature: torch.Tensor,
        teacher_feature: torch.Tensor,
        student_logits: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        teacher_logits: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Features: raw outputs of the mimicked layer, (N, ...) of one shape. Returns {'loss', 'mimic',
        and 'ce' / 'kd' when weighted}; logits/labels are needed only for the terms that use them."""
        if student_feature.shape != teacher_feature.shape:
            raise ValueError(
                f"student and teacher features differ in shape: {tuple(student_feature.shape)} vs "
                f"{tuple(teacher_feature.shape)}"
            )
        mimic = F.mse_loss(self.target(student_feature), self.target(teacher_feature.detach()))
        terms = {"mimic": mimic}
        loss = self.mimic_weight * mimic
        if self.ce_weight:
            if student_logits is None or labels is None:
                raise ValueError("ce_weight > 0 needs the student's logits and the labels")
            terms["ce"] = F.cross_entropy(student_logits, labels)
            loss = loss + self.ce_weight * terms["ce"]
        if self.kd_weight:
            if student_logits is None or teacher_logits is None:
                raise ValueError("kd_weight > 0 needs the student's and the teacher's logits")
            t = self.temperature
            terms["kd"] = F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits.detach() / t, 1),
                                   log_target=True, reduction="batchmean")  # fmt: skip
            loss = loss + self.kd_weight * t * t * terms["kd"]
        terms["loss"] = loss
        return terms


class MimickedFeature:
    """Context manager that captures the output of `layer` (with its graph) during a forward pass.

    detach_downstream: the layers after `layer` receive a detached copy, so losses on the logits
    (cross-entropy, KD) train only those layers and the layers up to `layer` learn from the feature
    loss alone.

    >>> with MimickedFeature(student, "layer3", detach_downstream=True) as tap:
    ...     logits = student(x)
    >>> loss = distill(tap.feature, teacher_feature, logits, y)["loss"]
    """

    def __init__(self, model: nn.Module, layer: str, *, detach_downstream: bool = False) -> None:
        self.module = resolve_layers(model, [layer], key="layer")[layer]
        self.detach_downstream = detach_downstream
        self.feature: torch.Tensor | None = None
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def _hook(self, _module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        self.feature = output
        return output.detach() if self.detach_downstream else None

    def __enter__(self) -> MimickedFeature:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def regional_feature_differences(h_student: torch.Tensor, h_teacher: torch.Tensor) -> dict[str, torch.Tensor]:
    """Fig. 9 (right): per corresponding region, the orientation difference 1 − cos(h_s, h_t) and the
    strength difference ‖h_s‖ − ‖h_t‖ of projected regional features.

    h_student, h_teacher: (N, R, d') the same images and regions projected into one frame (e.g. both
    maps through the teacher's regional projection Λ and strength scale). Returns
    {'one_minus_cos': (N, R), 'strength_diff': (N, R)}.
    """
    if h_student.shape != h_teacher.shape or h_student.dim() != 3:
        raise ValueError(f"expected two (N, R, d') tensors of one shape, got {tuple(h_student.shape)} and "
                         f"{tuple(h_teacher.shape)}")  # fmt: skip
    cos = F.cosine_similarity(h_student, h_teacher, dim=2, eps=1e-12)
    return {"one_minus_cos": 1 - cos, "strength_diff": h_student.norm(dim=2) - h_teacher.norm(dim=2)}


def differences_table(h_students: Mapping[str, torch.Tensor], h_teacher: torch.Tensor, layer: str) -> pd.DataFrame:
    """Tidy per-region rows for the histograms: student, layer, image, region, one_minus_cos,
    strength_diff. h_students: {student name: (N, R, d')}; h_teacher: (N, R, d')."""
    frames = []
    for student, h in h_students.items():
        diff = regional_feature_differences(h, h_teacher)
        n, r = diff["one_minus_cos"].shape
        frames.append(
            pd.DataFrame(
                {
                    "student": student,
                    "layer": layer,
                    "image": torch.arange(n).repeat_interleave(r).numpy(),
                    "region": torch.arange(r).repeat(n).numpy(),
                    "one_minus_cos": diff["one_minus_cos"].flatten().double().cpu().numpy(),
                    "strength_diff": diff["strength_diff"].flatten().double().cpu().numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def distillation_claims(
    points: pd.DataFrame,
    differences: pd.DataFrame,
    *,
    near: str,
    far: str,
    teacher: str = "teacher",
    model_column: str = "model",
    layers: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The claims of paper 002's distillation study (Sec. 4, Fig. 9) with the measured numbers.

    points: knowledge-point counts with columns `model_column`, layer, n_points, n_reliable (teacher and
    both students); differences: `differences_table` rows of the top compared layer for both
    students. near / far: the student mimicking the top conv feature / the feature farther from the
    compared layers (the penultimate one). layers: compared layers (default: every layer of the
    teacher's rows). Returns rows (claim, measured, supported).
    """
    for column in (model_column, "layer", "n_reliable"):
        if column not in points:
            raise ValueError(f"points need a column {column!r} (have {list(points.columns)})")
    table = points.set_index([model_column, "layer"])["n_reliable"]
    layers = list(layers) if layers is not None else list(points.loc[points[model_column] == teacher, "layer"])
    missing = [(m, la) for m in (teacher, near, far) for la in layers if (m, la) not in table.index]
    if missing:
        raise ValueError(f"points lack rows for {missing}")
    counts = {m: [int(table[(m, la)]) for la in layers] for m in (teacher, near, far)}
    listing = ", ".join(f"{la}: {counts[teacher][i]}/{counts[near][i]}/{counts[far][i]}" for i, la in enumerate(layers))
    fewer = sum(counts[s][i] < counts[teacher][i] for s in (near, far) for i in range(len(layers)))
    far_fewer = sum(counts[far][i] < counts[near][i] for i in range(len(layers)))
    rows = [
        {
            "claim": "students encode fewer reliable knowledge points than the teacher (in most compared layers)",
            "measured": f"reliable points teacher/{near}/{far} per layer: {listing}; fewer in {fewer} of "
            f"{2 * len(layers)} (student, layer) pairs",
            "supported": fewer > len(layers),
        },
        {
            "claim": f"the student mimicking the farther feature ({far}) encodes fewer reliable knowledge points than "
            f"the one mimicking the top conv feature ({near}) (in most compared layers)",
            "measured": f"fewer in {far_fewer} of {len(layers)} layers ({listing})",
            "supported": far_fewer > len(layers) / 2,
        },
    ]
    by_student = differences.groupby("student")
    for column, what in (("one_minus_cos", "orientation: mean 1 − cos"),
                         ("strength_diff", "strength: mean |‖h_s‖ − ‖h_t‖|")):  # fmt: skip
        stat = by_student[column].apply(lambda v: float(v.abs().mean()))
        layer = ", ".join(sorted(set(differences["layer"])))
        rows.append(
            {
                "claim": f"the farther student's ({far}) regional features differ more from the teacher's at {layer} "
                f"({what.split(':')[0]})",
                "measured": f"{what}: {near} {stat[near]:.4g}, {far} {stat[far]:.4g}",
                "supported": bool(stat[far] > stat[near]),
            }
        )
    return pd.DataFrame(rows, columns=["claim", "measured", "supported"])


@torch.no_grad()
def regional_differences(student_maps: torch.Tensor, teacher_maps: torch.Tensor) -> dict[str, float]:
    """Orientation (mean 1 − cos) and relative strength (mean |‖f_s‖ − ‖f_t‖| / mean ‖f_t‖) differences
    of the ReLU'd regional features (what the students mimic) of two (N, K, H, W) maps of one layer,
    position by position."""
    s, t = student_maps.relu().flatten(2).transpose(1, 2), teacher_maps.relu().flatten(2).transpose(1, 2)
    cos = F.cosine_similarity(s, t, dim=2, eps=1e-12)
    strength_s, strength_t = s.norm(dim=2), t.norm(dim=2)
    return {
        "orientation_diff": float((1 - cos).mean()),
        "strength_diff": float((strength_s - strength_t).abs().mean() / strength_t.mean().clamp_min(1e-12)),
    }
