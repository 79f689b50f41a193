"""Batched, on-device training augmentation (no per-sample Python work)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, padding: int = 0, hflip: bool = False) -> torch.Tensor:
    """Random crop after zero-padding by `padding` pixels, then random horizontal flip (p = 0.5).

    x: (B, C, H, W); returns the same shape. Uses the global torch RNG of x's device (seeded by
    the runner), one offset pair and one flip decision per image.
    """
    if padding > 0:
        b, c, h, w = x.shape
        padded = F.pad(x, (padding, padding, padding, padding))
        off_y = torch.randint(0, 2 * padding + 1, (b, 1), device=x.device)
        off_x = torch.randint(0, 2 * padding + 1, (b, 1), device=x.device)
        rows = (off_y + torch.arange(h, device=x.device)).view(b, 1, h, 1).expand(b, c, h, w + 2 * padding)
        x = padded.gather(2, rows)
        cols = (off_x + torch.arange(w, device=x.device)).view(b, 1, 1, w).expand(b, c, h, w)
        x = x.gather(3, cols)
    if hflip:
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    return x
