"""Rank agreement of mean S with accuracy (paper 000, Fig. 5's "ranking ... consistent with accuracy")."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
from scipy import stats

from explainlab.methods.chirality import mean_similarity, rank_agreement


def test_rank_agreement_perfect_reversed_and_exact_p() -> None:
    acc = {"a": 91.7, "b": 92.6, "c": 93.1, "d": 93.4}
    same = rank_agreement({"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}, acc)
    assert same["spearman"] == pytest.approx(1.0) and same["kendall"] == pytest.approx(1.0)
    assert same["spearman_p"] == pytest.approx(1 / 24) and same["kendall_p"] == pytest.approx(1 / 24)
    reversed_ = rank_agreement({"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}, acc)
    assert reversed_["spearman"] == pytest.approx(-1.0) and reversed_["spearman_p"] == pytest.approx(1.0)
    swapped = rank_agreement({"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.4}, acc)
    # exact p by enumeration: share of the 24 pairings with ρ >= the observed one
    scores, accs = [0.1, 0.3, 0.2, 0.4], [91.7, 92.6, 93.1, 93.4]
    rhos = [stats.spearmanr(list(p), accs)[0] for p in itertools.permutations(scores)]
    observed = stats.spearmanr(scores, accs)[0]
    assert swapped["spearman"] == pytest.approx(0.8)
    assert swapped["spearman_p"] == pytest.approx(sum(r >= observed - 1e-12 for r in rhos) / 24)
    with pytest.raises(ValueError, match="unmatched"):
        rank_agreement({"a": 1.0, "b": 2.0, "x": 3.0}, acc)
    with pytest.raises(ValueError, match="at least 3"):
        rank_agreement({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0})


def test_mean_similarity_over_analysed_trained_layers() -> None:
    table = pd.DataFrame(
        {
            "model": ["m", "m", "m", "m", "n"],
            "weights": ["trained", "trained", "trained", "untrained", "trained"],
            "analysed": [True, True, False, True, True],
            "similarity": [0.2, 0.4, 9.0, 9.0, 0.5],
        }
    )
    means = mean_similarity(table)
    assert means["m"] == pytest.approx(0.3) and means["n"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no rows"):
        mean_similarity(table, weights="other")
