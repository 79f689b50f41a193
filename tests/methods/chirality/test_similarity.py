"""S(L) against the paper's double loop (float64), the flip on the paper's example, edge cases."""

from __future__ import annotations

import itertools

import pytest
import torch
import torchvision
from torch import nn

from explainlab.methods.chirality import (
    ChiralityProfile,
    commutative_residual,
    flip_kernels,
    flippable_convs,
    kernel_similarity,
)


def similarity_by_definition(weight: torch.Tensor, flip: bool = True) -> float:
    """Eq. 5 literally: B² cosines between K_j and T(K_j'), T flipping each channel matrix by the
    paper's inversion matrix T2 (anti-diagonal ones) on the right."""
    b, c, h, w = weight.shape
    t2 = torch.fliplr(torch.eye(w, dtype=torch.float64))
    mirrored = [torch.stack([weight[j, ch] @ t2 for ch in range(c)]) if flip else weight[j] for j in range(b)]
    total = 0.0
    for j, jp in itertools.product(range(b), range(b)):
        u, v = weight[j].flatten(), mirrored[jp].flatten()
        total += abs(float(u @ v / (u.norm() * v.norm())))
    return total / b**2


def test_flip_matches_the_papers_example() -> None:
    kernel = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    assert flip_kernels(kernel)[0, 0].tolist() == [[3, 2, 1], [6, 5, 4], [9, 8, 7]]
    # Channel order is kept: each channel is mirrored in place.
    two = torch.stack([kernel[0, 0], 10 * kernel[0, 0]]).unsqueeze(0)
    assert torch.equal(flip_kernels(two)[0, 1], 10 * flip_kernels(kernel)[0, 0])


@pytest.mark.parametrize("shape", [(5, 3, 3, 3), (7, 2, 5, 5), (4, 3, 2, 2), (6, 1, 3, 4), (3, 8, 1, 3)])
@pytest.mark.parametrize("flip", [True, False])
def test_kernel_similarity_equals_the_double_loop(shape: tuple[int, ...], flip: bool) -> None:
    weight = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(sum(shape)))
    s, used = kernel_similarity(weight, flip=flip)
    assert used == shape[0] and s.dtype == torch.float64
    assert s.item() == pytest.approx(similarity_by_definition(weight, flip), rel=1e-12, abs=1e-15)


def test_no_flip_diagonal_counts_one_per_kernel() -> None:
    weight = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    assert kernel_similarity(weight, flip=False)[0].item() == pytest.approx(1.0)


def test_symmetric_kernels_are_their_own_mirror() -> None:
    base = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    symmetric = base + base.flip(-1)
    # cos(K_j, T K_j') = cos(K_j, K_j') when every kernel is mirror-symmetric.
    assert kernel_similarity(symmetric)[0].item() == pytest.approx(kernel_similarity(symmetric, flip=False)[0].item())


def test_zero_kernels_are_left_out_and_nan_is_refused() -> None:
    weight = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    padded = torch.cat([weight, torch.zeros(2, 2, 3, 3, dtype=torch.float64)])
    s, used = kernel_similarity(padded)
    assert used == 5 and s.item() == pytest.approx(kernel_similarity(weight)[0].item())
    s, used = kernel_similarity(torch.zeros(3, 1, 3, 3))
    assert used == 0 and torch.isnan(s)
    bad = weight.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        kernel_similarity(bad)
    conv = nn.Conv2d(2, 5, 3)
    with torch.no_grad():
        conv.weight[1, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="layer 0"):
        ChiralityProfile().fit(nn.Sequential(conv))


def test_flippable_convs_skip_one_by_one_kernels() -> None:
    net = torchvision.models.resnet50()
    names = list(flippable_convs(net))
    assert names[0] == "conv1" and all(n == "conv1" or n.endswith("conv2") for n in names)
    assert len(names) == 1 + 3 + 4 + 6 + 3  # the stem and one 3x3 conv per bottleneck
    with pytest.raises(ValueError, match="no conv layer"):
        ChiralityProfile().fit(nn.Sequential(nn.Conv2d(3, 8, 1), nn.Linear(3, 3)))


def test_profile_matches_per_layer_calls_and_the_residual_compares_like_with_like() -> None:
    torch.manual_seed(0)
    untrained = torchvision.models.resnet18()
    profile = ChiralityProfile(dtype=torch.float64).fit(untrained)
    convs = flippable_convs(untrained)
    assert profile.layers_ == list(convs)
    for i, conv in enumerate(convs.values()):
        assert profile.similarity_[i].item() == pytest.approx(kernel_similarity(conv.weight.double())[0].item())
    frame = profile.to_frame()
    assert list(frame.columns) == ["layer", "position", "kernels", "kernel_shape", "similarity", "similarity_noflip"]
    assert frame.loc[0, "kernel_shape"] == "3x7x7" and frame.loc[0, "kernels"] == 64
    shifted = ChiralityProfile(dtype=torch.float64).fit_weights(
        {n: c.weight + c.weight.flip(-1) for n, c in convs.items()}
    )
    residual = commutative_residual(profile, shifted)
    assert (residual["E"] > 0).all()
    assert residual["E"].tolist() == pytest.approx((profile.similarity_ - shifted.similarity_).abs().tolist())
    with pytest.raises(ValueError, match="different architectures"):
        commutative_residual(profile, ChiralityProfile().fit(torchvision.models.vgg11()))


@pytest.mark.parametrize("flip", [True, False])
def test_similarity_without_the_diagonal_against_the_double_loop(flip: bool) -> None:
    torch.manual_seed(3)
    weight = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    t2 = torch.fliplr(torch.eye(3, dtype=torch.float64))
    mirrored = [torch.stack([weight[j, ch] @ t2 for ch in range(2)]) if flip else weight[j] for j in range(5)]
    total = sum(
        abs(float(weight[j].flatten() @ mirrored[k].flatten() / (weight[j].norm() * mirrored[k].norm())))
        for j, k in itertools.product(range(5), range(5))
        if j != k
    )
    s, n = kernel_similarity(weight, flip=flip, diagonal=False)
    assert n == 5 and float(s) == pytest.approx(total / 20, abs=1e-12)
    full, _ = kernel_similarity(weight, flip=flip)
    if not flip:  # the no-flip diagonal is exactly 1
        assert float(full) == pytest.approx((5 + 20 * float(s)) / 25, abs=1e-12)
