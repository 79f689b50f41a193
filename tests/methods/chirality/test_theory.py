"""The untrained expectation of S (analytic) against sampling, and why initialisation cannot matter."""

from __future__ import annotations

import math

import pytest
import torch

from explainlab.methods.chirality import (
    expected_abs_cos,
    expected_abs_cos_flip,
    expected_similarity,
    kernel_similarity,
    reinitialised,
)


def test_expected_abs_cos_closed_forms() -> None:
    assert expected_abs_cos(2) == pytest.approx(2 / math.pi)  # a uniform angle
    assert expected_abs_cos(3) == pytest.approx(0.5)  # cos is uniform on [-1, 1] in 3-D
    for d in (500, 5000):
        assert expected_abs_cos(d) == pytest.approx(math.sqrt(2 / (math.pi * d)), rel=2 / d)


@pytest.mark.parametrize("shape", [(1, 3, 3), (16, 3, 3), (3, 2, 2), (4, 4, 4), (3, 7, 7)])
def test_diagonal_expectation_matches_sampling(shape: tuple[int, int, int]) -> None:
    kernels = torch.randn(100_000, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    flat, mirrored = kernels.flatten(1), kernels.flip(-1).flatten(1)
    cos = ((flat * mirrored).sum(1) / flat.norm(dim=1) ** 2).abs()
    sem = cos.std().item() / math.sqrt(len(cos))
    assert abs(cos.mean().item() - expected_abs_cos_flip(*shape)) < 4 * sem


def test_odd_and_even_widths_differ_as_derived() -> None:
    # Odd W: the fixed middle column pulls cos(K, TK) to about f/d = 1/3 for 3x3.
    assert expected_abs_cos_flip(256, 3, 3) == pytest.approx(1 / 3, abs=1e-3)
    # Even W: no fixed coordinates, cos is symmetric around 0 and |cos| ~ sqrt(2 / (π p)).
    pairs = 256 * 4 * 2
    assert expected_abs_cos_flip(256, 4, 4) == pytest.approx(math.sqrt(2 / (math.pi * pairs)), rel=0.01)


@pytest.mark.parametrize("layer", [(16, 16, 3, 3), (64, 3, 7, 7), (32, 8, 4, 4)])
def test_gaussian_layers_agree_with_the_expectation(layer: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(7)
    draws = torch.stack([kernel_similarity(torch.randn(*layer, generator=generator))[0] for _ in range(200)]).double()
    expected = expected_similarity(*layer)
    assert abs(draws.mean().item() - expected) < 4 * draws.std().item() / math.sqrt(len(draws))


def test_gaussian_initialisations_give_identical_similarity() -> None:
    """S is blind to the scale of kernels, so kaiming/xavier/normal draws of one seed agree (up to the
    float32 rounding of the drawn weights)."""
    shapes = {"a": torch.empty(32, 16, 3, 3), "b": torch.empty(64, 32, 5, 5)}
    by_init = {
        init: [kernel_similarity(w.double())[0].item() for w in reinitialised(shapes, init, seed=3).values()]
        for init in ("kaiming_normal", "xavier_normal", "normal")
    }
    assert by_init["kaiming_normal"] == pytest.approx(by_init["xavier_normal"], rel=1e-6)
    assert by_init["kaiming_normal"] == pytest.approx(by_init["normal"], rel=1e-6)
    other_seed = [kernel_similarity(w.double())[0].item() for w in reinitialised(shapes, "normal", seed=4).values()]
    assert other_seed != pytest.approx(by_init["normal"], rel=1e-6)
