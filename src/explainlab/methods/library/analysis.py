"""What the library networks' prediction inputs P tell: agreement with the DNN (Table 1), confusion
index (Eq. 4), consistency of predictions across layers (CPL, Eq. 5) and its AUROC as an
adversarial-input detector, and the best θ / θ-set of a study's tables."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from explainlab.methods.library.network import LibraryNetwork, MapUnits, predict_scores_many
from explainlab.methods.library.patterns import Patterns


def confusion_index(scores: torch.Tensor, labels: torch.Tensor, *, variant: str = "paper") -> torch.Tensor:
    """Confusion index between classes, (C, C): row d1 = true class, column d2 = possible answer.

    scores: P (N, C) from `LibraryNetwork.predict_scores`; labels: (N,) true classes.
    Only samples whose library prediction is correct (argmax P = label) count.
    variant 'paper' (Eq. 4): CA(d1, d2) = Σ_k softmax(P^k)_d1 softmax(P^k)_d2 over those samples
        with label d1, and CI(d1, d2) = CA(d1, d2) / CA(d1, d1) (diagonal 1).
    variant 'original' (the paper's code): per sample exp(P_c - P_label) summed into row label,
        each row divided by its number of samples, diagonal set to 0.
    Rows without a correct sample are 0.
    """
    n_classes = scores.shape[1]
    correct = scores.argmax(1) == labels
    p, y = scores[correct].double(), labels[correct]
    onehot = torch.nn.functional.one_hot(y, n_classes).double()  # (n, C)
    if variant == "paper":
        prob = torch.softmax(p, dim=1)
        ca = onehot.T @ (prob * prob.gather(1, y[:, None]))  # row d1: Σ_k p_d1 p_d2 over label d1
        diag = ca.diagonal().clone()
        return torch.where(diag[:, None] > 0, ca / diag.clamp_min(1e-300)[:, None], torch.zeros_like(ca))
    if variant == "original":
        rel = torch.exp(p - p.gather(1, y[:, None]))
        sums = onehot.T @ rel
        counts = onehot.sum(0)
        ci = sums / counts.clamp_min(1)[:, None]
        ci.fill_diagonal_(0)
        return ci
    raise ValueError(f"variant={variant!r} is invalid: expected 'paper' or 'original'.")


def consistency(
    scores_by_layer: Mapping[str, torch.Tensor], *, pairs: Sequence[tuple[str, str]] | None = None, softmax: bool = True
) -> torch.Tensor:
    """CPL per input (N,): mean over layer pairs of cos(P_i, P_j) (Eq. 5).

    scores_by_layer: {layer: P (N, C)}; pairs: which layer pairs (default: all pairs i < j);
    softmax: apply a softmax to each P first (as the original code did).
    """
    layers = list(scores_by_layer)
    pairs = list(pairs) if pairs is not None else list(combinations(layers, 2))
    if not pairs:
        raise ValueError("CPL needs at least two layers (one pair).")
    vecs = {k: torch.softmax(v.double(), 1) if softmax else v.double() for k, v in scores_by_layer.items()}
    cos = [torch.nn.functional.cosine_similarity(vecs[a], vecs[b], dim=1) for a, b in pairs]
    return torch.stack(cos).mean(0)


def detection_auroc(cpl_clean: torch.Tensor, cpl_adversarial: torch.Tensor) -> float:
    """AUROC of 'low CPL means adversarial' (adversarial = positive class; score = -CPL)."""
    scores = -torch.cat([cpl_clean, cpl_adversarial]).double().cpu().numpy()
    is_adv = np.r_[np.zeros(len(cpl_clean)), np.ones(len(cpl_adversarial))]
    if len(cpl_clean) == 0 or len(cpl_adversarial) == 0:
        raise ValueError("AUROC needs at least one clean and one adversarial input.")
    return float(roc_auc_score(is_adv, scores))


def agreement(scores: torch.Tensor, dnn_pred: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """How well a library's prediction inputs P (N, C) predict the DNN (paper 001, Table 1):
    top1_agreement = mean[argmax P = DNN answer], top1_accuracy = mean[argmax P = label],
    top3_agreement = mean[DNN answer among the 3 largest P]. dnn_pred, labels: (N,)."""
    top3 = scores.topk(min(3, scores.shape[1]), dim=1).indices
    return {
        "top1_agreement": float((scores.argmax(1) == dnn_pred).float().mean()),
        "top1_accuracy": float((scores.argmax(1) == labels).float().mean()),
        "top3_agreement": float((top3 == dnn_pred[:, None]).any(1).float().mean()),
    }


def cpl_tables(
    scores: Mapping[float, Mapping[tuple[str, float], torch.Tensor]],
    threshold_sets: Mapping[str, Mapping[str, float]],
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    softmax: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CPL of every input per attack strength and θ-set (Eq. 5), and its detection AUROC.

    scores: {eps: {(layer, θ): P (N, C)}}, eps = 0 the clean inputs (needed for the AUROC); the same
    N inputs at every eps. threshold_sets: {name: {layer: θ}}. Returns (cpl: index, eps,
    threshold_set, is_adversarial, cpl; auroc: eps, threshold_set, auroc, n_clean, n_adv) for eps > 0.
    """
    rows, auroc_rows = [], []
    for name, chosen in threshold_sets.items():
        per_eps = {}
        for eps, by_key in scores.items():
            by_layer = {layer: by_key[(layer, t)].cpu() for layer, t in chosen.items()}
            per_eps[eps] = consistency(by_layer, pairs=pairs, softmax=softmax)
        for eps, cpl in per_eps.items():
            rows += [{"index": i, "eps": eps, "threshold_set": name, "is_adversarial": eps > 0, "cpl": value}
                     for i, value in enumerate(cpl.tolist())]  # fmt: skip
            if eps > 0:
                auroc_rows.append({"eps": eps, "threshold_set": name, "auroc": detection_auroc(per_eps[0.0], cpl),
                                   "n_clean": len(per_eps[0.0]), "n_adv": len(cpl)})  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(auroc_rows)


def library_tables(
    libraries: Mapping[tuple[str, float], LibraryNetwork],
    studied: Mapping[str, Sequence[float]],
    test_haps: Mapping[str, Patterns],
    dnn_pred: torch.Tensor,
    labels: torch.Tensor,
    *,
    top_k: int,
    variant: str = "paper",
    map_units: Callable[[str], MapUnits] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[str, float], torch.Tensor]]:
    """What each studied library tells about the test inputs (paper 001, Table 1, Fig. 3).

    libraries: {(layer, θ): fitted library}; studied: {layer: θ list} to report; test_haps:
    {layer: (N, ...)}; dnn_pred, labels: (N,). map_units(layer): how prediction blocks are spread.
    Returns (sizes: layer, threshold, size; predictions: layer, threshold, top_k, n and `agreement`'s
    columns; {(layer, θ): confusion index (C, C) of `variant`}), in the order of `studied`.
    """
    size_rows, pred_rows, confusion = [], [], {}
    for layer, values in studied.items():
        spread = {"map_units": map_units(layer)} if map_units is not None else {}
        scores = predict_scores_many({t: libraries[(layer, t)] for t in values}, test_haps[layer], top_k, **spread)
        for t in values:
            p = scores[t].cpu()
            size_rows.append({"layer": layer, "threshold": t, "size": libraries[(layer, t)].size_})
            pred_rows.append({"layer": layer, "threshold": t, "top_k": top_k, "n": len(p),
                              **agreement(p, dnn_pred, labels)})  # fmt: skip
            confusion[(layer, t)] = confusion_index(p, labels, variant=variant)
    return pd.DataFrame(size_rows), pd.DataFrame(pred_rows), confusion


def cpl_scores(
    libraries: Mapping[tuple[str, float], LibraryNetwork],
    threshold_sets: Mapping[str, Mapping[str, float]],
    haps_by_eps: Mapping[float, Mapping[str, Patterns]],
    top_k: int,
    *,
    map_units: MapUnits | None = None,
) -> dict[float, dict[tuple[str, float], torch.Tensor]]:
    """{eps: {(layer, θ): P (N, C)}} of every (layer, θ) a threshold set uses, the input `cpl_tables`
    takes: per eps and layer one product with the union of that layer's nodes."""
    spread = {"map_units": map_units} if map_units is not None else {}
    scores: dict[float, dict[tuple[str, float], torch.Tensor]] = {}
    layers = list(next(iter(threshold_sets.values()))) if threshold_sets else []
    for eps, haps in haps_by_eps.items():
        scores[eps] = {}
        for layer in layers:
            used = {(layer, t): libraries[(layer, t)] for t in sorted({s[layer] for s in threshold_sets.values()})}
            scores[eps].update(predict_scores_many(used, haps[layer], top_k, **spread))
    return scores


def best_agreement(predictions: pd.DataFrame, sizes: pd.DataFrame) -> pd.DataFrame:
    """Per layer (in order of appearance) the θ whose library agrees best with the DNN (top-1; the last
    of equals in θ order): layer, threshold, top1_agreement, size."""
    rows = []
    for layer in predictions.layer.unique():
        best = predictions[predictions.layer == layer].sort_values("top1_agreement").iloc[-1]
        size = sizes[(sizes.layer == layer) & (sizes.threshold == best.threshold)]["size"].iloc[0]
        rows.append({"layer": layer, "threshold": best.threshold, "top1_agreement": best.top1_agreement,
                     "size": int(size)})  # fmt: skip
    return pd.DataFrame(rows, columns=["layer", "threshold", "top1_agreement", "size"])


def best_threshold_sets(auroc: pd.DataFrame) -> pd.DataFrame:
    """Per eps (increasing) the θ-set of the highest CPL AUROC beside the lowest: eps, threshold_set,
    auroc, worst, n_sets (read against chance, 0.5, and against the other sets)."""
    rows = []
    for eps, group in auroc.groupby("eps"):
        best = group.loc[group.auroc.idxmax()]
        rows.append({"eps": eps, "threshold_set": best.threshold_set, "auroc": best.auroc,
                     "worst": group.auroc.min(), "n_sets": len(group)})  # fmt: skip
    return pd.DataFrame(rows, columns=["eps", "threshold_set", "auroc", "worst", "n_sets"])
