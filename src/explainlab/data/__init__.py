"""LightningDataModules; images come out as float32 in [0, 1], (B, C, H, W)."""

from explainlab.data.base import ImageDataModule, ImageTensorDataset
from explainlab.data.cifar10 import CIFAR10DataModule
from explainlab.data.digits import DigitsDataModule
from explainlab.data.mnist import MNISTDataModule
from explainlab.data.synthetic import SyntheticDataModule

__all__ = [
    "ImageDataModule",
    "ImageTensorDataset",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "MNISTDataModule",
    "SyntheticDataModule",
]
