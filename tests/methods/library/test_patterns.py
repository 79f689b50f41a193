"""Factored HAPs of affine taps: cosines, libraries, links and scores equal the plain patterns' (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from explainlab.methods.library import (
    FactoredHAPs,
    HebbianSums,
    LibraryNetwork,
    affine_factors,
    associate_libraries,
    build_libraries,
    factorable,
    predict_scores_many,
    unit_rows,
)
from tests.methods.library import reference

TAPS = {
    "conv2d": (lambda: nn.Conv2d(1, 16, 3), (1, 8, 8)),
    "conv2d strided, padded, dilated": (lambda: nn.Conv2d(2, 12, 3, stride=2, padding=2, dilation=2), (2, 9, 9)),
    "conv2d grouped, no bias": (lambda: nn.Conv2d(4, 16, 3, padding=1, groups=2, bias=False), (4, 5, 5)),
    "conv2d circular padding": (lambda: nn.Conv2d(1, 8, 3, padding=1, padding_mode="circular"), (1, 6, 6)),
    "conv1d same": (lambda: nn.Conv1d(2, 9, 5, padding="same"), (2, 11)),
    "linear": (lambda: nn.Linear(6, 30), (6,)),
    "linear on tokens": (lambda: nn.Linear(4, 30), (5, 4)),  # (B, 5, 4) -> (B, 5, 30)
}


def factored_and_plain(name: str, n: int = 40, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(module, inputs, outputs) in float64; inputs have a shared offset so cosines spread over (0, 1)."""
    build, shape = TAPS[name]
    torch.manual_seed(seed)
    module = build().double()
    y = torch.randn(n, *shape, dtype=torch.float64) + 0.5 * torch.randn(1, *shape, dtype=torch.float64)
    with torch.no_grad():
        h = module(y)
    return module, y, h


@pytest.mark.parametrize("name", list(TAPS))
def test_factored_cosines_equal_direct_cosines(name: str) -> None:
    module, y, h = factored_and_plain(name)
    queries, keys = unit_rows(FactoredHAPs(affine_factors(module, y, h)))
    plain, _ = unit_rows(h)
    assert torch.allclose(queries @ keys.T, plain @ plain.T, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["conv2d", "conv2d grouped, no bias", "linear"])
def test_libraries_links_and_scores_equal_plain_patterns(name: str) -> None:
    module, y, h = factored_and_plain(name, n=160, seed=1)
    factored = FactoredHAPs(affine_factors(module, y, h))
    labels = torch.randint(0, 4, (len(h),), generator=torch.Generator().manual_seed(2))
    c = (unit_rows(h)[0] @ unit_rows(h)[0].T).triu(1)
    thresholds = [float(c[c != 0].quantile(q)) + 1e-6 for q in (0.5, 0.9, 0.99)]
    sums = HebbianSums(labels, 4)
    indices = build_libraries(factored, thresholds, block_size=16, hebbian=sums)
    for t in thresholds:
        assert indices[t].tolist() == reference.construct(h, t)
    fitted = associate_libraries(factored, indices, labels, 4, block_size=16, hebbian=sums)
    plain = associate_libraries(h, indices, labels, 4, block_size=16)
    test_scores = predict_scores_many(fitted, factored[:30], 3)
    for t in thresholds:
        assert torch.allclose(fitted[t].links_, plain[t].links_, rtol=1e-9, atol=1e-9)
        assert torch.allclose(test_scores[t], plain[t].predict_scores(h[:30], 3), rtol=1e-9, atol=1e-9)
        alone = LibraryNetwork(t, block_size=7).fit(factored).associate(factored, labels, 4)
        assert torch.allclose(alone.predict_scores(factored[:30], 2), plain[t].predict_scores(h[:30], 2), atol=1e-9)


def test_zero_patterns_and_nan_are_handled() -> None:
    module = nn.Conv2d(1, 8, 3, bias=False).double()
    y = torch.randn(6, 1, 6, 6, dtype=torch.float64)
    y[2] = 0  # h = M·0 = 0 exactly
    with torch.no_grad():
        factored = FactoredHAPs(affine_factors(module, y, module(y)))
    with pytest.raises(ValueError, match=r"1 all-zero rows.*\[2\]"):
        unit_rows(factored)
    queries, keys = unit_rows(factored, allow_zero=True)
    assert queries[2].abs().max() == 0 and keys[2].abs().max() == 0
    assert 2 not in LibraryNetwork(0.99, allow_zero=True).fit(factored).node_index_.tolist()
    bad = factored.stacked.clone()
    bad[4, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        unit_rows(FactoredHAPs(bad), allow_zero=True)


def test_factorable_and_shape_checks() -> None:
    assert factorable(nn.Conv2d(1, 32, 3), 784, 21632)
    assert not factorable(nn.Conv2d(32, 8, 3), 21632, 4608)  # would not shorten the rows
    assert not factorable(nn.ReLU(), 10, 100)
    with pytest.raises(TypeError, match="not an affine tap"):
        affine_factors(nn.ReLU(), torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\(N, 2, d \+ 1\)"):
        FactoredHAPs(torch.zeros(3, 4))


def test_plain_patterns_against_a_factored_library_are_refused() -> None:
    module, y, h = factored_and_plain("conv2d")
    lib = LibraryNetwork(0.9).fit(FactoredHAPs(affine_factors(module, y, h)))
    with pytest.raises(ValueError, match="width 576 do not match this library's nodes \\(width 65\\)"):
        lib.associate(h, torch.zeros(len(h)), 2)  # 16 x 6 x 6 plain outputs; 1 x 8 x 8 + 1 factored


@pytest.mark.gpu
def test_factored_libraries_and_links_on_cuda_equal_the_cpu_ones() -> None:
    module, y, h = factored_and_plain("conv2d", n=300, seed=3)
    labels = torch.randint(0, 4, (len(h),), generator=torch.Generator().manual_seed(4))
    results = {}
    for device in ("cpu", "cuda"):
        factored = FactoredHAPs(affine_factors(module.to(device), y.to(device), h.to(device)))
        sums = HebbianSums(labels.to(device), 4)
        indices = build_libraries(factored, [0.6, 0.9], block_size=64, hebbian=sums)
        fitted = associate_libraries(factored, indices, labels.to(device), 4, block_size=64, hebbian=sums)
        results[device] = (indices, fitted[0.9].links_.cpu())
    for t in (0.6, 0.9):
        assert torch.equal(results["cpu"][0][t], results["cuda"][0][t])
    assert torch.allclose(results["cpu"][1], results["cuda"][1], rtol=1e-9, atol=1e-9)
