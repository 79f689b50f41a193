"""scikit-learn's handwritten digits (1,797 images, 8x8, 17 grey levels): embedded, no download."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from explainlab.data.base import ImageDataModule


class DigitsDataModule(ImageDataModule):
    """UCI optical digits as shipped in scikit-learn; 20 % stratified test split (fixed seed 0)."""

    name = "digits"
    num_classes = 10
    in_channels = 1
    image_size = 8
    classes = tuple(str(i) for i in range(10))

    def __init__(self, test_fraction: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.test_fraction = test_fraction

    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        bunch = load_digits()
        images = bunch.images.astype("float32") / 16.0  # pixel values are 0..16
        idx = range(len(images))
        train_idx, test_idx = train_test_split(
            list(idx), test_size=self.test_fraction, random_state=0, stratify=bunch.target
        )
        sel = sorted(train_idx if train else test_idx)
        x = torch.from_numpy(images[sel]).unsqueeze(1)
        y = torch.from_numpy(bunch.target[sel]).long()
        return x, y
