"""Comparing heat maps (paper 003): SSIM between maps, pairwise or as a matrix across models.
Clustering of the matrices is in `clustering`."""

from __future__ import annotations

import torch
from torchmetrics.functional.image import structural_similarity_index_measure


def gaussian_window_size(sigma: float) -> int:
    """Side of torchmetrics' Gaussian SSIM window for `sigma`: 2 * int(3.5 * sigma + 0.5) + 1
    (11 for Wang et al.'s sigma = 1.5)."""
    return 2 * int(3.5 * sigma + 0.5) + 1


def _window(maps: torch.Tensor, kernel_size: int | None, sigma: float, gaussian: bool) -> int:
    """The window side, checked against the maps; a Gaussian window's side follows from sigma."""
    if not sigma > 0:
        raise ValueError(f"the SSIM window's sigma must be > 0, got {sigma}")
    if gaussian:
        size = gaussian_window_size(sigma)
        if kernel_size is not None and kernel_size != size:
            raise ValueError(f"a Gaussian SSIM window with sigma={sigma} has {size} pixels (torchmetrics: "
                             f"2 * int(3.5 sigma + 0.5) + 1), not {kernel_size}; leave kernel_size unset")  # fmt: skip
    else:
        size = 7 if kernel_size is None else kernel_size
    if size < 3 or size % 2 == 0:
        raise ValueError(f"the SSIM window must be an odd size >= 3, got {size}")
    if min(maps.shape[-2:]) < size:
        raise ValueError(f"heat maps of {tuple(maps.shape[-2:])} are smaller than the {size}x{size} window")
    return size


def ssim_pairs(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    data_range: float = 1.0,
    sigma: float = 1.5,
    kernel_size: int | None = None,
    gaussian: bool = True,
) -> torch.Tensor:
    """SSIM of each pair (a[p], b[p]) of 2-D maps (Wang et al. 2004; torchmetrics), in one batched call.

    a, b: (P, H, W), normalised to a common range of width `data_range` (e.g. [0, 1]). Window: a
    Gaussian of standard deviation `sigma` (default 1.5, Wang et al.'s; its side follows from sigma,
    `gaussian_window_size`), or with gaussian=False a uniform kernel_size x kernel_size window
    (default 7, scikit-image's default). Returns (P,) float64. The per-pixel SSIM map is averaged over
    the positions whose whole window lies inside the image, as scikit-image and Wang et al.'s
    reference code do (torchmetrics' own mean also counts the reflected border)."""
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"expected two stacks of heat maps (P, H, W), got {tuple(a.shape)} and {tuple(b.shape)}")
    size = _window(a, kernel_size, sigma, gaussian)
    if not len(a):
        return torch.zeros(0, dtype=torch.float64)
    _, full = structural_similarity_index_measure(
        a.double().unsqueeze(1), b.double().unsqueeze(1), gaussian_kernel=gaussian, sigma=sigma,
        kernel_size=size, data_range=data_range, reduction="none", return_full_image=True,
    )  # fmt: skip
    pad = (size - 1) // 2
    return full[..., pad:-pad, pad:-pad].mean((1, 2, 3))


def ssim_matrix(
    maps: torch.Tensor,
    *,
    data_range: float = 1.0,
    sigma: float = 1.5,
    kernel_size: int | None = None,
    gaussian: bool = True,
) -> torch.Tensor:
    """SSIM between every pair of 2-D heat maps (see `ssim_pairs` for the window and the mean).

    maps: (M, H, W), normalised to a common range of width `data_range` (e.g. [0, 1]).
    Returns (M, M) float64, symmetric, ones on the diagonal. All pairs go through one batched call.
    """
    if maps.dim() != 3:
        raise ValueError(f"expected heat maps (M, H, W), got {tuple(maps.shape)}")
    options = {"data_range": data_range, "sigma": sigma, "kernel_size": kernel_size, "gaussian": gaussian}
    _window(maps, kernel_size, sigma, gaussian)
    m = len(maps)
    i, j = torch.triu_indices(m, m, offset=1)
    scores = ssim_pairs(maps[i], maps[j], **options)
    out = torch.eye(m, dtype=torch.float64)
    out[i, j] = out[j, i] = scores.to(out)
    return out
