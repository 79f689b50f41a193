"""SSIM matrices against scikit-image; clustering recovers planted groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster
from skimage.metrics import structural_similarity

from explainlab.methods.heatmaps import cluster_heatmaps, cluster_ssim, ssim_matrix


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


def _planted_groups() -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(1)
    prototypes = torch.rand(3, 24, 24, generator=g)
    labels = np.repeat([0, 1, 2], 4)
    maps = prototypes[labels] + 0.05 * torch.randn(12, 24, 24, generator=g)
    return maps.clamp(0, 1), labels


def _same_partition(found: np.ndarray, truth: np.ndarray) -> bool:
    return len({(a, b) for a, b in zip(found, truth, strict=True)}) == len(set(truth)) == len(set(found))


def test_ward_and_ssim_average_linkage_recover_planted_groups() -> None:
    maps, labels = _planted_groups()
    tree, cophenetic = cluster_heatmaps(maps)
    assert _same_partition(fcluster(tree, 3, criterion="maxclust"), labels) and cophenetic > 0.9
    tree, cophenetic = cluster_ssim(ssim_matrix(maps))
    assert _same_partition(fcluster(tree, 3, criterion="maxclust"), labels) and cophenetic > 0.9
    with pytest.raises(ValueError, match="Euclidean"):
        cluster_ssim(ssim_matrix(maps), method="ward")
