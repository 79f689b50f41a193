"""Clustering of SSIM matrices: planted groups, the merge order of planted trees (Table 4.13's
statistics), the half-distance rule, tidy tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster

from explainlab.methods.heatmaps import (
    cluster_heatmaps,
    cluster_ssim,
    clustering_table,
    merge_order,
    merge_statistics,
    ssim_matrix,
)

NAMES = ["A", "B", "C", "D", "E", "F"]


def _planted_groups() -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(1)
    prototypes = torch.rand(3, 24, 24, generator=g)
    labels = np.repeat([0, 1, 2], 4)
    maps = prototypes[labels] + 0.05 * torch.randn(12, 24, 24, generator=g)
    return maps.clamp(0, 1), labels


def _same_partition(found: np.ndarray, truth: np.ndarray) -> bool:
    return len({(a, b) for a, b in zip(found, truth, strict=True)}) == len(set(truth)) == len(set(found))


@pytest.mark.parametrize("method", ["average", "ward", "complete"])
def test_linkages_on_1_minus_ssim_and_ward_on_maps_recover_planted_groups(method: str) -> None:
    maps, labels = _planted_groups()
    tree, cophenetic = cluster_ssim(ssim_matrix(maps), method=method)
    assert _same_partition(fcluster(tree, 3, criterion="maxclust"), labels) and cophenetic > 0.9
    tree, cophenetic = cluster_heatmaps(maps)
    assert _same_partition(fcluster(tree, 3, criterion="maxclust"), labels) and cophenetic > 0.9
    with pytest.raises(ValueError, match="linkage"):
        cluster_ssim(ssim_matrix(maps), method="centroid")


def _similarity(distances: dict[tuple[str, str], float], default: float) -> torch.Tensor:
    d = torch.full((6, 6), default, dtype=torch.float64)
    for (a, b), v in distances.items():
        i, j = NAMES.index(a), NAMES.index(b)
        d[i, j] = d[j, i] = v
    d.fill_diagonal_(0)
    return 1 - d


# A chain: A-B first, then C, D, E one by one; F far from everything.
CHAIN = {("A", "B"): 0.1, ("A", "C"): 0.15, ("B", "C"): 0.15, ("A", "D"): 0.3, ("B", "D"): 0.3, ("C", "D"): 0.3,
         ("A", "E"): 0.5, ("B", "E"): 0.5, ("C", "E"): 0.5, ("D", "E"): 0.5}  # fmt: skip


@pytest.mark.parametrize("method", ["ward", "average"])
def test_merge_order_of_a_planted_chain(method: str) -> None:
    tree, _ = cluster_ssim(_similarity(CHAIN, 0.9), method=method)
    order = merge_order(tree, NAMES).set_index("model")
    assert order["joins_last"].tolist() == [False] * 5 + [True]
    assert order["joins_second_last"].tolist() == [False] * 4 + [True, False]
    assert order["in_first_triple"].tolist() == [True] * 3 + [False] * 3
    assert set(order["first_triple"]) == {"A+B+C"} and not order["in_last_pair"].any()
    assert order["join_height"]["A"] == order["join_height"]["B"] == tree[0, 2] < order["join_height"]["C"]
    assert not order["distinct_styles"].any()  # the first merge is far below half of the last


def test_last_pair_no_first_triple_and_the_half_distance_rule() -> None:
    # E and F close to each other, far from A-D; A-B and C-D pairs merge before any triple.
    pairs = {("A", "B"): 0.1, ("C", "D"): 0.12, ("E", "F"): 0.2, ("A", "C"): 0.3, ("A", "D"): 0.3,
             ("B", "C"): 0.3, ("B", "D"): 0.3}  # fmt: skip
    order = merge_order(cluster_ssim(_similarity(pairs, 0.9), method="average")[0], NAMES).set_index("model")
    assert order["in_last_pair"].tolist() == [False] * 4 + [True, True]
    assert not order["joins_last"].any() and not order["in_first_triple"].any()
    assert set(order["first_triple"]) == {""}
    # Every pair far apart (0.8), the closest at 0.6: the first merge lies above half the last one.
    close = {("A", "B"): 0.6}
    order = merge_order(cluster_ssim(_similarity(close, 0.8), method="average")[0], NAMES)
    assert order["distinct_styles"].all()


def test_clustering_table_and_merge_statistics_count_over_images() -> None:
    chain = _similarity(CHAIN, 0.9)
    swapped = chain[[5, 1, 2, 3, 4, 0]][:, [5, 1, 2, 3, 4, 0]]  # A is now the far one
    similarity = torch.stack([chain, chain, swapped])
    maps = torch.rand(3, 6, 16, 16, generator=torch.Generator().manual_seed(0))
    table = clustering_table(similarity, NAMES, maps=maps)
    assert set(table["linkage"]) == {"ward_1-ssim", "average_1-ssim", "ward_maps"}
    assert len(table) == 6 * (3 * 3 + 2)  # images x linkages + the mean (no ward_maps)
    assert set(table["image"]) == {0, 1, 2, "mean"}
    table.insert(0, "method", "gradcam")
    stats = merge_statistics(table[table["linkage"] == "ward_1-ssim"])
    last = stats[stats["statistic"] == "joins_last"].set_index("subject")
    assert last.loc["F", "count"] == 2 and last.loc["A", "count"] == 1 and (last["images"] == 3).all()
    triples = stats[stats["statistic"] == "first_triple"].set_index("subject")["count"].to_dict()
    assert triples == {"A+B+C": 2, "B+C+F": 1}
    assert set(stats["method"]) == {"gradcam"}
    with pytest.raises(ValueError, match="at least 3 models"):
        clustering_table(similarity[:, :2, :2], NAMES[:2])
    with pytest.raises(ValueError, match="needs the maps"):
        clustering_table(similarity, NAMES, linkages=["ward_maps"])
