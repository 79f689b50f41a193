"""Every detector against its paper's formula in float64 on small inputs (direct loops kept
here), against pytorch-ood where both exist, on planted structure, and on the inputs it refuses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_ood.detector import Mahalanobis as OODMahalanobis

from explainlab.errors import ConfigValueError
from explainlab.methods.detection import (
    CPL,
    DETECTORS,
    LID,
    MSP,
    DeepKNN,
    DetectorInputError,
    Energy,
    KNNDistance,
    Mahalanobis,
    NotFittedError,
    make_detector,
)
from explainlab.methods.library import LibraryNetwork, consistency

LAYERS = ["a", "b"]


def blobs(n: int = 90, c: int = 3, dims: tuple[int, ...] = (4, 6), seed: int = 0):
    """Class-dependent Gaussian features of two layers, labels, logits."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % c
    feats = {}
    for name, d in zip(LAYERS, dims, strict=True):
        centres = torch.randn(c, d, generator=g, dtype=torch.float64) * 3
        feats[name] = centres[labels] + torch.randn(n, d, generator=g, dtype=torch.float64)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) + 4 * torch.nn.functional.one_hot(labels, c)
    return feats, logits, labels


def test_msp_and_energy_are_the_papers_scores() -> None:
    _, logits, _ = blobs()
    msp = MSP().fit(None, None, None).score(None, logits)
    energy = Energy(temperature=2.0).fit(None, None, None).score(None, logits)
    for i in range(len(logits)):
        row = [float(v) for v in logits[i]]
        z = sum(math.exp(v) for v in row)
        assert msp[i].item() == pytest.approx(-max(math.exp(v) / z for v in row), rel=1e-12)
        assert energy[i].item() == pytest.approx(-2.0 * math.log(sum(math.exp(v / 2.0) for v in row)), rel=1e-12)


def test_mahalanobis_is_lee_et_al_eq2_and_pytorch_ood_up_to_its_scale() -> None:
    feats, logits, labels = blobs()
    det = Mahalanobis(LAYERS).fit(feats, logits, labels)
    test, _, _ = blobs(n=12, seed=1)
    got = det.layer_scores(test)
    for j, layer in enumerate(LAYERS):
        x = feats[layer].numpy()
        means = np.stack([x[labels.numpy() == c].mean(0) for c in range(3)])
        cov = sum(np.outer(x[i] - means[labels[i]], x[i] - means[labels[i]]) for i in range(len(x))) / len(x)
        prec = np.linalg.inv(cov)
        for i, row in enumerate(test[layer].numpy()):
            expected = min((row - m) @ prec @ (row - m) for m in means)
            assert got[i, j].item() == pytest.approx(expected, rel=1e-9)
        # pytorch-ood: -max_c(-0.5 d_c) with Σ not divided by N -> 0.5 d / N.
        ood = OODMahalanobis(None).fit_features(feats[layer].float(), labels)
        theirs = ood.predict_features(test[layer].float()).double()
        torch.testing.assert_close(theirs * 2 * len(x), got[:, j], rtol=1e-3, atol=1e-3)


def test_knn_is_the_kth_normalised_distance() -> None:
    feats, logits, labels = blobs()
    det = KNNDistance(LAYERS, k=5).fit(feats, logits, labels)
    test, _, _ = blobs(n=10, seed=2)
    got = det.score(test, None)
    ref = feats["b"] / feats["b"].norm(dim=1, keepdim=True)
    for i, row in enumerate(test["b"]):
        q = row / row.norm()
        d = sorted(float((q - r).norm()) for r in ref)
        assert got[i].item() == pytest.approx(d[4], rel=1e-9)


def test_deep_knn_is_papernot_mcdaniel_algorithm_1() -> None:
    feats, logits, labels = blobs(n=60)
    test, _, _ = blobs(n=8, seed=3)
    det = DeepKNN(LAYERS, k=4, calibration=20).fit(feats, logits, labels)
    got = det.score(test, None)
    train = {layer: feats[layer][:40] for layer in LAYERS}
    y_train = labels[:40].tolist()

    def alpha(point: dict, j: int) -> int:
        total = 0
        for layer in LAYERS:
            d = [(float((point[layer] - r).norm()), i) for i, r in enumerate(train[layer])]
            total += sum(1 for _, i in sorted(d)[:4] if y_train[i] != j)
        return total

    calib = [alpha({layer: feats[layer][40 + m] for layer in LAYERS}, int(labels[40 + m])) for m in range(20)]
    for i in range(8):
        point = {layer: test[layer][i] for layer in LAYERS}
        p = [sum(a >= alpha(point, j) for a in calib) / len(calib) for j in range(3)]
        assert got[i].item() == pytest.approx(1 - max(p), abs=1e-12)


def test_lid_is_ma_et_al_eq4_against_fixed_clean_minibatches() -> None:
    feats, logits, labels = blobs(n=50)
    det = LID(LAYERS, k=5, batch_size=10, n_batches=3, seed=0).fit(feats, logits, labels)
    test, _, _ = blobs(n=6, seed=4)
    got = det.layer_scores(test)
    g = torch.Generator().manual_seed(0)
    picks = [torch.randperm(50, generator=g)[:10] for _ in range(3)]
    for j, layer in enumerate(LAYERS):
        for i in range(6):
            values = []
            for batch in picks:
                r = sorted(float((test[layer][i] - feats[layer][m]).norm()) for m in batch)[:5]
                values.append(-1.0 / (sum(math.log(v / r[-1]) for v in r) / 5))
            assert got[i, j].item() == pytest.approx(sum(values) / 3, rel=1e-9)


def test_lid_is_higher_off_the_data_manifold() -> None:
    """Planted: clean features on a 1-D line in 8-D, 'attacked' ones pushed off it in all directions."""
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(8, generator=g, dtype=torch.float64)
    line = lambda n: torch.rand(n, 1, generator=g, dtype=torch.float64) * direction  # noqa: E731
    train = {"a": line(300)}
    det = LID(["a"], k=10, batch_size=100, n_batches=3).fit(train, None, None)
    clean = det.score({"a": line(40)}, None)
    off = det.score({"a": line(40) + 0.2 * torch.randn(40, 8, generator=g, dtype=torch.float64)}, None)
    assert clean.mean() < off.mean()


def test_layer_combination_benign_and_supervised() -> None:
    feats, logits, labels = blobs()
    det = Mahalanobis(LAYERS).fit(feats, logits, labels)
    per_layer = det.layer_scores(feats)
    benign = det.score(feats, None)
    torch.testing.assert_close(benign, ((per_layer - per_layer.mean(0)) / per_layer.std(0)).mean(1))
    shifted = {layer: v + 4.0 for layer, v in feats.items()}
    det.fit_combiner(det.layer_scores(feats), det.layer_scores(shifted))
    assert det.score(shifted, None).mean() > 0 > det.score(feats, None).mean()
    with pytest.raises(DetectorInputError, match=">= 2 clean"):
        det.fit_combiner(per_layer[:1], per_layer)
    assert torch.equal(det.reset_combiner().score(feats, None), benign)


def test_cpl_detector_is_minus_the_library_consistency() -> None:
    g = torch.Generator().manual_seed(0)
    haps = {layer: torch.randn(80, d, generator=g) for layer, d in zip(LAYERS, (5, 7), strict=True)}
    logits = torch.randn(80, 3, generator=g)
    det = CPL({"a": 0.3, "b": 0.4}, top_k=4).fit(haps, logits, None)
    got = det.score(haps, logits)
    answers = logits.argmax(1)
    by_layer = {}
    for layer, t in (("a", 0.3), ("b", 0.4)):
        lib = LibraryNetwork(t).fit(haps[layer]).associate(haps[layer], answers, 3)
        by_layer[layer] = lib.predict_scores(haps[layer], 4)
    torch.testing.assert_close(got, -consistency(by_layer), rtol=1e-5, atol=1e-5)


def test_bad_inputs_are_refused() -> None:
    feats, logits, labels = blobs()
    with pytest.raises(ConfigValueError, match="one of msp, energy, mahalanobis, knn, deep_knn, lid, cpl"):
        make_detector("odin")
    with pytest.raises(NotFittedError, match="call fit"):
        Mahalanobis(LAYERS).score(feats, None)
    with pytest.raises(DetectorInputError, match=r"needs pooled features of layers \['b'\]"):
        Mahalanobis(LAYERS).fit({"a": feats["a"]}, logits, labels)
    with pytest.raises(DetectorInputError, match="needs the training labels"):
        Mahalanobis(LAYERS).fit(feats, logits, None)
    bad = dict(feats, a=feats["a"].clone())
    bad["a"][3, 0] = float("nan")
    det = Mahalanobis(LAYERS).fit(feats, logits, labels)
    with pytest.raises(DetectorInputError, match="1 of 90 scores are NaN"):
        det.score(bad, None)
    with pytest.raises(DetectorInputError, match="NaN"):
        MSP().fit(None, None, None).score(None, torch.full((3, 2), float("nan")))
    assert set(DETECTORS) == {"msp", "energy", "mahalanobis", "knn", "deep_knn", "lid", "cpl"}
