"""Where the regions of a (pooled) feature-map grid lie: positions of the full map, pixel boxes of
the input image, masks of selected regions, and regions traced through layers (paper 002, Figs. 4,
6-right, 7-left).

Regions are the cells of a gh x gw grid laid over a map of H x W positions (the knowledge-point
study pools maps to at most `max_side` positions per side): position (i, j) belongs to cell
(i·gh // H, j·gw // W), numbered row-major, r = a·gw + b. These are exactly the cells of
adaptive average pooling when H and W are multiples of gh and gw. On the input image a cell is the
matching rectangle of pixels (its centre receptive field; the theoretical receptive field is larger).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def grid_shape(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """The region grid of an H x W map pooled to at most `max_side` per side (None: unpooled)."""
    h, w = size
    return (h, w) if max_side is None else (min(h, max_side), min(w, max_side))


def region_index_map(size: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """(H, W) long tensor: the region of every position of an H x W map under a gh x gw grid."""
    (h, w), (gh, gw) = size, grid
    if not (1 <= gh <= h and 1 <= gw <= w):
        raise ValueError(f"a {gh}x{gw} region grid does not fit a {h}x{w} map")
    rows = torch.arange(h) * gh // h
    cols = torch.arange(w) * gw // w
    return rows[:, None] * gw + cols[None, :]


def region_boxes(grid: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """(R, 4) float boxes (x0, y0, x1, y1) in image pixels, one per region, row-major."""
    (gh, gw), (h, w) = grid, image_size
    a, b = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    a, b = a.flatten().double(), b.flatten().double()
    return torch.stack([b * w / gw, a * h / gh, (b + 1) * w / gw, (a + 1) * h / gh], dim=1)


def region_masks(selected: torch.Tensor, grid: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) bool pixel masks of the selected regions. selected: (N, R) bool, R = gh·gw."""
    index = region_index_map(image_size, grid).flatten()
    if selected.dim() != 2 or selected.shape[1] != grid[0] * grid[1]:
        raise ValueError(f"expected (N, {grid[0] * grid[1]}) selected regions, got {tuple(selected.shape)}")
    return selected[:, index.to(selected.device)].reshape(len(selected), *image_size)


def trace_regions(
    selected: torch.Tensor, features_by_layer: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Fig. 4: the regions selected in one layer (e.g. the reliable knowledge points of the top layer)
    followed through the other layers at the same grid positions.

    selected: (N, R) bool; features_by_layer: {layer: (N, R, d')} on one region grid. Returns
    (index (M, 2) of the (image, region) pairs, in row-major order, {layer: (M, d') their features}).
    """
    index = selected.nonzero()
    traced = {}
    for layer, h in features_by_layer.items():
        if h.shape[:2] != selected.shape:
            raise ValueError(f"{layer}: regional features {tuple(h.shape)} do not share the grid "
                             f"{tuple(selected.shape)}")  # fmt: skip
        traced[layer] = h[index[:, 0], index[:, 1]]
    return index, traced
