"""What a detection row reports: separation metrics (scikit-learn) beside the attack's context,
Lee et al.'s filter, and the held-out split of the supervised protocol."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from explainlab.methods.detection.base import DetectorInputError, check_finite


def detection_metrics(clean: torch.Tensor, attacked: torch.Tensor) -> dict[str, float]:
    """AUROC, AUPR (attacked = positive), FPR at 95% TPR and detection accuracy (best threshold,
    max over thresholds of 1 - (FPR + FNR) / 2 as Ma et al. report it) of scores where higher
    means attacked. Refuses fewer than 2 scores of either kind and NaN/inf scores."""
    if len(clean) < 2 or len(attacked) < 2:
        raise DetectorInputError(
            f"detection needs >= 2 clean and >= 2 attacked/OOD scores (got {len(clean)} and {len(attacked)})."
        )
    check_finite(torch.as_tensor(clean), "clean scores")
    check_finite(torch.as_tensor(attacked), "attacked scores")
    scores = torch.cat([torch.as_tensor(clean), torch.as_tensor(attacked)]).double().cpu().numpy()
    truth = np.r_[np.zeros(len(clean)), np.ones(len(attacked))]
    fpr, tpr, _ = roc_curve(truth, scores)
    return {
        "auroc": float(roc_auc_score(truth, scores)),
        "aupr": float(average_precision_score(truth, scores)),
        "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
        "detection_accuracy": float(np.max(1.0 - (fpr + 1.0 - tpr) / 2.0)),
    }


def attack_context(labels: torch.Tensor, clean_pred: torch.Tensor, attacked_pred: torch.Tensor) -> dict[str, float]:
    """attack_success_rate: of the images classified correctly when clean, the fraction the attack
    makes wrong; robust_accuracy: fraction of attacked images still classified correctly."""
    correct = clean_pred == labels
    flipped = correct & (attacked_pred != labels)
    return {
        "clean_accuracy": float(correct.double().mean()),
        "attack_success_rate": int(flipped.sum()) / max(int(correct.sum()), 1),
        "robust_accuracy": float((attacked_pred == labels).double().mean()),
    }


def lee_filter(labels: torch.Tensor, clean_pred: torch.Tensor, attacked_pred: torch.Tensor) -> torch.Tensor:
    """(N,) bool: images classified correctly when clean and wrongly once attacked (Lee et al. 2018)."""
    return (clean_pred == labels) & (attacked_pred != labels)


def held_out_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint image indices (fit, scored) of the supervised protocol: a seeded `fraction` of the
    n images fits the layer combination (their clean and attacked versions), the rest is scored."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction={fraction!r} is invalid: expected a number in (0, 1).")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(round(n * fraction))
    return order[:cut].sort().values, order[cut:].sort().values
