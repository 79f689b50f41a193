"""Procedurally generated class-conditional images, for fast tests of any image shape."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from explainlab.data.base import ImageDataModule


def make_synthetic(
    n: int, *, num_classes: int, channels: int, size: int, noise: float, seed: int, template_seed: int = 1234
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, channels, size, size) in [0, 1] and balanced labels (n,).

    Each class owns a smooth random template (4x4 noise upsampled bilinearly); a sample is its
    class template plus Gaussian pixel noise of std `noise`, clipped to [0, 1]. Templates depend
    only on `template_seed`, so train and test splits share them.
    """
    g_templates = torch.Generator().manual_seed(template_seed)
    coarse = torch.rand(num_classes, channels, 4, 4, generator=g_templates)
    templates = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    images = templates[labels] + noise * torch.randn(n, channels, size, size, generator=g)
    return images.clamp_(0.0, 1.0), labels


class SyntheticDataModule(ImageDataModule):
    """Synthetic images; shape, classes and sizes come from the constructor."""

    name = "synthetic"

    def __init__(
        self,
        n_train: int = 512,
        n_test: int = 128,
        num_classes: int = 4,
        in_channels: int = 1,
        image_size: int = 16,
        noise: float = 0.1,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.n_train, self.n_test, self.noise = n_train, n_test, noise
        self.num_classes, self.in_channels, self.image_size = num_classes, in_channels, image_size
        self.classes = tuple(f"class{i}" for i in range(num_classes))

    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.n_train if train else self.n_test
        return make_synthetic(
            n,
            num_classes=self.num_classes,
            channels=self.in_channels,
            size=self.image_size,
            noise=self.noise,
            seed=self.seed * 2 + (0 if train else 1),
        )
