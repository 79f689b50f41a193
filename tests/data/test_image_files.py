"""Images from files: decoding, shorter-side resize and centre crop, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.io import write_png

from explainlab.data.image_files import load_image_files, resize_images
from explainlab.errors import ExplainlabError


def test_files_are_resized_on_the_shorter_side_and_centre_cropped(tmp_path: Path) -> None:
    wide = torch.zeros(3, 20, 40, dtype=torch.uint8)
    wide[0, :, 6:34] = 255  # a red band wider than the centre half: the centre crop sees only red
    write_png(wide, str(tmp_path / "wide.png"))
    grey = torch.full((1, 16, 16), 128, dtype=torch.uint8)
    write_png(grey, str(tmp_path / "grey.png"))
    images = load_image_files([tmp_path / "wide.png", tmp_path / "grey.png"], size=10)
    assert images.shape == (2, 3, 10, 10) and images.dtype == torch.float32
    assert torch.allclose(images[0, 0], torch.ones(10, 10)) and images[0, 1:].abs().max() == 0
    assert torch.allclose(images[1], torch.full((3, 10, 10), 128 / 255), atol=1e-6)  # grey becomes RGB


def test_missing_or_broken_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ExplainlabError, match="method.image_paths: no image file .*nope.png"):
        load_image_files([tmp_path / "nope.png"], 8, key="method.image_paths")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ExplainlabError, match="broken.png is not a readable image"):
        load_image_files([tmp_path / "broken.png"], 8)


def test_resize_images_keeps_range() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert resize_images(x, 8) is x
    big = resize_images(x, 24)
    assert big.shape == (2, 3, 24, 24) and big.min() >= 0 and big.max() <= 1
