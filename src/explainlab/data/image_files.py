"""Images read from files (e.g. the ImageNet photos of paper 003), ready for pixel-space models."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from explainlab.errors import ExplainlabError


def load_image_files(paths: Sequence[str | os.PathLike], size: int, *, key: str = "image_paths") -> torch.Tensor:
    """Images (N, 3, size, size) float32 in [0, 1]: each file decoded as RGB, its shorter side resized
    to `size` (bilinear, antialiased), then centre-cropped. A missing or undecodable file raises an
    error naming `key` and the file."""
    images = []
    for path in paths:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ExplainlabError(f"{key}: no image file {file}")
        try:
            image = decode_image(str(file), mode=ImageReadMode.RGB)
        except RuntimeError as err:
            raise ExplainlabError(f"{key}: {file} is not a readable image ({err})") from err
        image = TF.resize(image, [size], antialias=True)
        images.append(TF.center_crop(image, [size, size]).float() / 255)
    if not images:
        raise ExplainlabError(f"{key} is empty: give at least one image file")
    return torch.stack(images)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size), bilinear; e.g. CIFAR images for ImageNet models."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
