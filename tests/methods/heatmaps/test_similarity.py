"""SSIM matrices and pairs against scikit-image, for the default and other windows."""

from __future__ import annotations

import pytest
import torch
from skimage.metrics import structural_similarity

from explainlab.methods.heatmaps import ssim_matrix, ssim_pairs


def test_ssim_matrix_matches_scikit_image() -> None:
    maps = torch.rand(4, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    maps[1] = 0.7 * maps[0] + 0.3 * maps[1]  # one similar pair
    got = ssim_matrix(maps)
    for i in range(4):
        for j in range(4):
            expected = structural_similarity(maps[i].numpy(), maps[j].numpy(), gaussian_weights=True, sigma=1.5,
                                             use_sample_covariance=False, data_range=1.0)  # fmt: skip
            assert got[i, j].item() == pytest.approx(expected, abs=1e-9)
    assert torch.equal(got, got.T) and got[0, 1] > got[0, 2]


def test_ssim_matrix_refuses_bad_shapes() -> None:
    with pytest.raises(ValueError, match="smaller than"):
        ssim_matrix(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="expected heat maps"):
        ssim_matrix(torch.rand(3, 1, 16, 16))


@pytest.mark.parametrize(
    ("sigma", "window", "gaussian"),
    [(1.5, None, True), (0.8, None, True), (2.5, None, True), (1.5, 7, False), (1.5, 5, False)],
)
def test_ssim_window_and_sigma_are_settable(sigma: float, window: int | None, gaussian: bool) -> None:
    g = torch.Generator().manual_seed(2)
    a, b = (
        torch.rand(3, 24, 24, generator=g, dtype=torch.float64),
        torch.rand(3, 24, 24, generator=g, dtype=torch.float64),
    )
    b[0] = a[0] * 0.8 + 0.1
    got = ssim_pairs(a, b, sigma=sigma, kernel_size=window, gaussian=gaussian)
    for p in range(3):
        # scikit-image's Gaussian window spans truncate * sigma on each side (torchmetrics: 3.5 sigma).
        options = {"gaussian_weights": True, "sigma": sigma, "truncate": 3.5} if gaussian else {"win_size": window}
        expected = structural_similarity(a[p].numpy(), b[p].numpy(), use_sample_covariance=False, data_range=1.0,
                                         **options)  # fmt: skip
        assert got[p].item() == pytest.approx(expected, abs=1e-9)
    matrix = ssim_matrix(torch.stack([a[0], b[0]]), sigma=sigma, kernel_size=window, gaussian=gaussian)
    assert torch.allclose(matrix[0, 1], got[0])


def test_bad_windows_are_refused() -> None:
    a = torch.rand(2, 24, 24)
    with pytest.raises(ValueError, match="odd size"):
        ssim_pairs(a, a, kernel_size=8, gaussian=False)
    with pytest.raises(ValueError, match="15 pixels"):
        ssim_pairs(a, a, sigma=2.0, kernel_size=11)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        ssim_pairs(a, a, sigma=0.0)
