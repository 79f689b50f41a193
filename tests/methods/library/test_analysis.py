"""Confusion index, CPL and AUROC against direct formulas and scikit-learn."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from explainlab.methods.library import agreement, confusion_index, consistency, cpl_tables, detection_auroc


def random_scores(n: int = 60, c: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    labels = scores.argmax(1).clone()
    labels[::4] = torch.randint(0, c, (len(labels[::4]),), generator=g)
    return scores, labels


def test_confusion_index_paper_equation() -> None:
    scores, labels = random_scores()
    ci = confusion_index(scores, labels, variant="paper")
    c = scores.shape[1]
    for d1 in range(c):
        ks = [k for k in range(len(labels)) if int(labels[k]) == d1 and int(scores[k].argmax()) == d1]

        def ca(a: int, b: int, ks: list[int] = ks) -> float:
            return sum(
                math.exp(scores[k, a]) * math.exp(scores[k, b]) / float(torch.exp(scores[k]).sum()) ** 2 for k in ks
            )

        for d2 in range(c):
            expected = ca(d1, d2) / ca(d1, d1) if ks else 0.0
            assert ci[d1, d2].item() == pytest.approx(expected, rel=1e-12)


def test_confusion_index_original_variant() -> None:
    scores, labels = random_scores(seed=1)
    ci = confusion_index(scores, labels, variant="original")
    for d1 in range(4):
        ks = [k for k in range(len(labels)) if int(labels[k]) == d1 and int(scores[k].argmax()) == d1]
        for d2 in range(4):
            expected = 0.0 if d1 == d2 or not ks else sum(math.exp(scores[k, d2] - scores[k, d1]) for k in ks) / len(ks)
            assert ci[d1, d2].item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="variant"):
        confusion_index(scores, labels, variant="other")


def test_cpl_direct_formula_and_pairs() -> None:
    g = torch.Generator().manual_seed(2)
    by_layer = {name: torch.randn(5, 3, generator=g, dtype=torch.float64) for name in ("a", "b", "c")}
    for softmax in (False, True):
        cpl = consistency(by_layer, softmax=softmax)
        for k in range(5):
            vec = {n: (torch.softmax(v[k], 0) if softmax else v[k]) for n, v in by_layer.items()}
            cos = [float(vec[i] @ vec[j] / (vec[i].norm() * vec[j].norm())) for i, j in combinations("abc", 2)]
            assert cpl[k].item() == pytest.approx(sum(cos) / 3, rel=1e-12)
    only = consistency(by_layer, pairs=[("a", "c")], softmax=False)
    assert torch.allclose(only, torch.nn.functional.cosine_similarity(by_layer["a"], by_layer["c"], dim=1))
    with pytest.raises(ValueError, match="two layers"):
        consistency({"a": by_layer["a"]})


def test_consistent_layers_give_cpl_one() -> None:
    p = torch.randn(4, 5, dtype=torch.float64)
    assert torch.allclose(consistency({"x": p, "y": 2 * p}, softmax=False), torch.ones(4, dtype=torch.float64))


def test_auroc_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    clean, adv = torch.tensor(rng.normal(0.8, 0.1, 50)), torch.tensor(rng.normal(0.6, 0.1, 40))
    expected = roc_auc_score(np.r_[np.zeros(50), np.ones(40)], -np.r_[clean.numpy(), adv.numpy()])
    assert detection_auroc(clean, adv) == pytest.approx(expected)
    assert detection_auroc(torch.ones(3), torch.zeros(3)) == 1.0


def test_agreement_against_direct_counts() -> None:
    scores, labels = random_scores(n=50, c=5, seed=3)
    dnn_pred = labels.roll(1)
    got = agreement(scores, dnn_pred, labels)
    rows = range(len(labels))
    top3 = [sorted(range(5), key=lambda c, k=k: -float(scores[k, c]))[:3] for k in rows]
    assert got["top1_agreement"] == pytest.approx(np.mean([int(scores[k].argmax()) == int(dnn_pred[k]) for k in rows]))
    assert got["top1_accuracy"] == pytest.approx(np.mean([int(scores[k].argmax()) == int(labels[k]) for k in rows]))
    assert got["top3_agreement"] == pytest.approx(np.mean([int(dnn_pred[k]) in top3[k] for k in rows]))


def test_cpl_tables_per_threshold_set_and_strength() -> None:
    g = torch.Generator().manual_seed(0)
    p = {eps: {(layer, t): torch.randn(12, 3, generator=g, dtype=torch.float64) for layer in "ab" for t in (0.5, 0.7)}
         for eps in (0.0, 0.1)}  # fmt: skip
    sets = {"low": {"a": 0.5, "b": 0.5}, "mixed": {"a": 0.5, "b": 0.7}}
    cpl, auroc = cpl_tables(p, sets, softmax=True)
    assert len(cpl) == 2 * 2 * 12 and list(auroc["threshold_set"]) == ["low", "mixed"]
    for name, chosen in sets.items():
        clean = consistency({k: p[0.0][(k, t)] for k, t in chosen.items()})
        adv = consistency({k: p[0.1][(k, t)] for k, t in chosen.items()})
        rows = cpl[(cpl.threshold_set == name) & (cpl.eps == 0.1)]
        assert np.allclose(rows["cpl"], adv.numpy()) and rows["is_adversarial"].all()
        expected = roc_auc_score(np.r_[np.zeros(12), np.ones(12)], -np.r_[clean.numpy(), adv.numpy()])
        assert auroc[auroc.threshold_set == name]["auroc"].item() == pytest.approx(expected)


def test_library_tables_and_cpl_scores_from_the_libraries_predictions() -> None:
    from explainlab.methods.library.analysis import cpl_scores, library_tables
    from explainlab.methods.library.fitting import fit_libraries
    from tests.methods.library.test_network import clustered

    train, labels = clustered(100, 6, 3, 0.6, seed=3)
    test, test_labels = clustered(30, 6, 3, 0.6, seed=4)
    logits = torch.nn.functional.one_hot(labels, 3).double()
    haps = {"x": train, "y": train * 2 + 0.1}
    libs = fit_libraries(haps, {"x": [0.5, 0.8], "y": [0.7]}, logits, block_size=16)
    tests = {"x": test, "y": test * 2 + 0.1}
    dnn_pred = test_labels.roll(1)
    sizes, pred, confusion = library_tables(libs, {"x": [0.8], "y": [0.7]}, tests, dnn_pred, test_labels, top_k=3)
    assert list(zip(sizes.layer, sizes.threshold)) == [("x", 0.8), ("y", 0.7)] == list(confusion)
    for row in pred.itertuples():
        p = libs[(row.layer, row.threshold)].predict_scores(tests[row.layer], 3)
        assert row.top1_agreement == agreement(p, dnn_pred, test_labels)["top1_agreement"] and row.n == 30
        torch.testing.assert_close(confusion[(row.layer, row.threshold)], confusion_index(p, test_labels))
    assert list(sizes["size"]) == [libs[("x", 0.8)].size_, libs[("y", 0.7)].size_]
    scores = cpl_scores(libs, {"S": {"x": 0.5, "y": 0.7}}, {0.0: tests}, 2)
    torch.testing.assert_close(scores[0.0][("x", 0.5)], libs[("x", 0.5)].predict_scores(test, 2))


def test_best_agreement_and_best_threshold_sets() -> None:
    import pandas as pd

    from explainlab.methods.library.analysis import best_agreement, best_threshold_sets

    pred = pd.DataFrame({"layer": ["b", "b", "a"], "threshold": [0.5, 0.6, 0.5], "top1_agreement": [0.9, 0.7, 0.4]})
    sizes = pd.DataFrame({"layer": ["b", "b", "a"], "threshold": [0.5, 0.6, 0.5], "size": [10, 20, 3]})
    best = best_agreement(pred, sizes)
    assert best.to_dict("records") == [
        {"layer": "b", "threshold": 0.5, "top1_agreement": 0.9, "size": 10},
        {"layer": "a", "threshold": 0.5, "top1_agreement": 0.4, "size": 3},
    ]
    auroc = pd.DataFrame({"eps": [0.2, 0.1, 0.2], "threshold_set": ["S", "S", "T"], "auroc": [0.6, 0.7, 0.8]})
    sets = best_threshold_sets(auroc)
    assert sets.to_dict("records") == [
        {"eps": 0.1, "threshold_set": "S", "auroc": 0.7, "worst": 0.7, "n_sets": 1},
        {"eps": 0.2, "threshold_set": "T", "auroc": 0.8, "worst": 0.6, "n_sets": 2},
    ]
