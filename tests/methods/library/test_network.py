"""LibraryNetwork against the float64 one-sample-at-a-time reference, planted structure, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from explainlab.methods.library import LibraryNetwork, build_libraries
from tests.methods.library import reference


def clustered(n: int, dim: int, clusters: int, spread: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(clusters, dim, generator=g, dtype=torch.float64)
    labels = torch.randint(0, clusters, (n,), generator=g)
    return centers[labels] + spread * torch.randn(n, dim, generator=g, dtype=torch.float64), labels


@pytest.mark.parametrize("threshold", [-0.5, 0.0, 0.3, 0.6, 0.9, 0.99])
@pytest.mark.parametrize("block_size", [1, 7, 64, 1000])
def test_construction_equals_reference(threshold: float, block_size: int) -> None:
    haps, _ = clustered(150, 12, 5, 0.8)
    expected = reference.construct(haps, threshold)
    lib = LibraryNetwork(threshold, block_size=block_size).fit(haps)
    assert lib.node_index_.tolist() == expected


def test_several_thresholds_in_one_pass_equal_separate_builds() -> None:
    haps, _ = clustered(300, 20, 6, 0.7, seed=1)
    thresholds = [0.2, 0.5, 0.7, 0.8, 0.95]
    together = build_libraries(haps, thresholds, block_size=32)
    for t in thresholds:
        assert together[t].tolist() == reference.construct(haps, t)


def test_ties_near_threshold_and_duplicates() -> None:
    """Patterns at cosine θ ± 1e-9 to the first one, and exact duplicates."""
    theta = 0.6
    base = torch.zeros(8, dtype=torch.float64)
    base[0] = 1
    rows = [base]
    for sign in (+1, -1, +1, -1):
        c = theta + sign * 1e-9
        v = torch.zeros(8, dtype=torch.float64)
        v[0], v[1 + len(rows) % 6] = c, (1 - c * c) ** 0.5
        rows.append(v)
    rows += [rows[0].clone(), 3.0 * rows[2]]  # a duplicate and a rescaled duplicate
    haps = torch.stack(rows)
    expected = reference.construct(haps, theta)
    for block in (1, 3, 16):
        assert LibraryNetwork(theta, block_size=block).fit(haps).node_index_.tolist() == expected
    assert expected == [0, 2, 4]  # those at θ - 1e-9 are novel; duplicates are not
    assert LibraryNetwork(1.0).fit(haps).node_index_.tolist() == reference.construct(haps, 1.0)


def test_planted_clusters_give_one_node_each() -> None:
    haps, labels = clustered(500, 32, 7, 0.01, seed=2)
    lib = LibraryNetwork(0.9, block_size=50).fit(haps)
    assert lib.size_ == 7 and sorted(labels[lib.node_index_].tolist()) == list(range(7))


def test_links_and_scores_equal_reference() -> None:
    haps, labels = clustered(80, 10, 4, 0.6, seed=3)
    test, _ = clustered(30, 10, 4, 0.6, seed=4)
    pred = labels.clone()
    pred[::5] = (pred[::5] + 1) % 4  # the DNN is sometimes wrong; links follow the DNN
    lib = LibraryNetwork(0.8, block_size=16).fit(haps).associate(haps, pred, 4)
    nodes = lib.node_index_.tolist()
    w = reference.links(haps, nodes, pred, 4)
    assert torch.allclose(lib.links_, w, rtol=1e-12, atol=1e-12)
    for k in (1, 3, 8):
        assert torch.allclose(
            lib.predict_scores(test, top_k=k), reference.scores(test, haps, nodes, w, k), rtol=1e-12, atol=1e-12
        )


def test_fit_with_dnn_answers_equals_fit_then_associate() -> None:
    haps, labels = clustered(60, 8, 3, 0.5, seed=6)
    one = LibraryNetwork(0.7, block_size=16).fit(haps, labels)
    two = LibraryNetwork(0.7, block_size=16).fit(haps).associate(haps, labels, 3)
    assert torch.equal(one.node_index_, two.node_index_) and torch.equal(one.links_, two.links_)
    assert one.n_classes_ == 3 and LibraryNetwork(0.7).fit(haps, labels, n_classes=5).links_.shape[0] == 5


def test_library_predicts_planted_classes() -> None:
    haps, labels = clustered(400, 16, 5, 0.2, seed=5)
    test, test_labels = clustered(200, 16, 5, 0.2, seed=5)
    lib = LibraryNetwork(0.7).fit(haps).associate(haps, labels, 5)
    assert (lib.predict(test, top_k=1) == test_labels).float().mean() > 0.95


@pytest.mark.parametrize("threshold", [-1.0, -2, 1.0001, float("nan"), True])
def test_thresholds_outside_range_are_refused(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        LibraryNetwork(threshold)


def test_all_zero_and_nan_patterns() -> None:
    haps = torch.randn(10, 4, dtype=torch.float64)
    haps[3] = 0
    with pytest.raises(ValueError, match="1 all-zero rows.*\\[3\\]"):
        LibraryNetwork(0.5).fit(haps)
    lib = LibraryNetwork(0.5, allow_zero=True).fit(haps)
    assert 3 not in lib.node_index_.tolist()
    kept = [i for i in range(10) if i != 3]
    assert lib.node_index_.tolist() == [kept[j] for j in reference.construct(haps[kept], 0.5)]
    haps[5, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        LibraryNetwork(0.5, allow_zero=True).fit(haps)
    with pytest.raises(ValueError, match="empty"):
        LibraryNetwork(0.5, allow_zero=True).fit(torch.zeros(4, 3))


def test_float16_input_matches_float32() -> None:
    haps, _ = clustered(200, 24, 5, 0.5, seed=6)
    a = LibraryNetwork(0.7).fit(haps.float().half())
    b = LibraryNetwork(0.7).fit(haps.float().half().float())
    assert torch.equal(a.node_index_, b.node_index_)


def test_save_load_and_refusal(tmp_path: Path) -> None:
    haps, labels = clustered(100, 8, 3, 0.3, seed=7)
    lib = LibraryNetwork(0.8).fit(haps).associate(haps, labels, 3)
    path = lib.save(tmp_path / "lib.pt", layer="fc1", model_hash="abc")
    again = LibraryNetwork.load(path, layer="fc1", model_hash="abc")
    assert torch.equal(again.nodes_, lib.nodes_) and torch.equal(again.predict_scores(haps), lib.predict_scores(haps))
    with pytest.raises(ValueError, match="layer 'fc1' of model 'abc', not of layer 'fc2'"):
        LibraryNetwork.load(path, layer="fc2", model_hash="abc")
    with pytest.raises(ValueError, match="not of layer 'fc1' of model 'xyz'"):
        LibraryNetwork.load(path, layer="fc1", model_hash="xyz")


def test_associate_libraries_equals_per_threshold_associate() -> None:
    from explainlab.methods.library import associate_libraries

    haps, labels = clustered(200, 12, 5, 0.7, seed=8)
    test, _ = clustered(40, 12, 5, 0.7, seed=9)
    thresholds = [0.5, 0.7, 0.9]
    together = associate_libraries(haps, build_libraries(haps, thresholds, block_size=16), labels, 5, block_size=16)
    for t in thresholds:
        alone = LibraryNetwork(t, block_size=16).fit(haps).associate(haps, labels, 5)
        assert torch.equal(together[t].node_index_, alone.node_index_)
        assert torch.allclose(together[t].links_, alone.links_, rtol=1e-12, atol=1e-12)
        assert torch.allclose(
            together[t].predict_scores(test, 3), alone.predict_scores(test, 3), rtol=1e-12, atol=1e-12
        )


@pytest.mark.parametrize("block_size", [1, 16, 4096])
@pytest.mark.parametrize("spread", [0.2, 0.7, 1.5])
def test_links_summed_during_construction_equal_associate(block_size: int, spread: float) -> None:
    """HebbianSums: construction's products plus the pairs it never formed give Eq. 2's links,
    whether few samples are stored (tight clusters) or nearly all (spread out)."""
    from explainlab.methods.library import HebbianSums, associate_libraries

    haps, labels = clustered(240, 10, 5, spread, seed=10)
    pred = labels.clone()
    pred[::7] = (pred[::7] + 2) % 5
    thresholds = [0.3, 0.7, 0.95]
    sums = HebbianSums(pred, 5)
    indices = build_libraries(haps, thresholds, block_size=block_size, hebbian=sums)
    plain = build_libraries(haps, thresholds, block_size=block_size)
    assert all(torch.equal(indices[t], plain[t]) for t in thresholds)
    fast = associate_libraries(haps, indices, pred, 5, block_size=block_size, hebbian=sums)
    slow = associate_libraries(haps, indices, pred, 5, block_size=block_size)
    for t in thresholds:
        assert torch.allclose(fast[t].links_, slow[t].links_, rtol=1e-12, atol=1e-12)
    nodes = indices[0.7].tolist()
    assert torch.allclose(fast[0.7].links_, reference.links(haps, nodes, pred, 5), rtol=1e-12, atol=1e-12)
    if spread == 1.5:  # most samples stored: construction formed most pairs
        assert len(sums.pending) < len(haps) // 4


def test_hebbian_sums_with_zero_rows_and_mismatches() -> None:
    from explainlab.methods.library import HebbianSums, associate_libraries

    haps, labels = clustered(60, 6, 3, 0.5, seed=11)
    haps[[4, 30]] = 0
    sums = HebbianSums(labels, 3)
    indices = build_libraries(haps, [0.8], block_size=8, allow_zero=True, hebbian=sums)
    fast = associate_libraries(haps, indices, labels, 3, block_size=8, allow_zero=True, hebbian=sums)
    slow = associate_libraries(haps, indices, labels, 3, block_size=8, allow_zero=True)
    assert {4, 30} <= set(sums.pending.tolist())
    assert torch.allclose(fast[0.8].links_, slow[0.8].links_, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="other DNN answers"):
        associate_libraries(haps, indices, (labels + 1) % 3, 3, allow_zero=True, hebbian=sums)
    with pytest.raises(ValueError, match="not made while building"):
        associate_libraries(haps, {0.8: indices[0.8][:-1]}, labels, 3, allow_zero=True, hebbian=sums)
    with pytest.raises(ValueError, match="differ in length"):
        build_libraries(haps, [0.8], allow_zero=True, hebbian=HebbianSums(labels[:10], 3))
