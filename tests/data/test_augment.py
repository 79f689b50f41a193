"""Batched crop+flip equals a per-image reference built from torchvision's functional ops."""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF

from explainlab.data.augment import random_crop_flip


def test_crop_matches_per_image_reference() -> None:
    x = torch.rand(6, 3, 8, 8, dtype=torch.float64)
    pad = 2
    torch.manual_seed(0)
    out = random_crop_flip(x, padding=pad, hflip=False)
    torch.manual_seed(0)
    off_y = torch.randint(0, 2 * pad + 1, (6, 1))
    off_x = torch.randint(0, 2 * pad + 1, (6, 1))
    for i in range(6):
        padded = TF.pad(x[i], [pad] * 4)
        ref = TF.crop(padded, int(off_y[i]), int(off_x[i]), 8, 8)
        assert torch.equal(out[i], ref)


def test_flip_flips_about_half() -> None:
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).view(2, 1, 2, 3).repeat(500, 1, 1, 1)
    out = random_crop_flip(x, padding=0, hflip=True)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 0.4 < flipped.float().mean() < 0.6
