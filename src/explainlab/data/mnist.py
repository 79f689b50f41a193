"""MNIST through torchvision (downloads when online; reads the torchvision layout offline)."""

from __future__ import annotations

import torch
from torchvision.datasets import MNIST

from explainlab.data.base import ImageDataModule
from explainlab.data.paths import resolve_data_root
from explainlab.errors import DatasetNotFoundError

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class MNISTDataModule(ImageDataModule):
    """MNIST, 60,000 train + 10,000 test images of 28x28.

    root: folder that contains `MNIST/raw/` (torchvision layout); null means $EXPLAINLAB_DATA or ./data.
    download: fetch the files from torchvision's mirrors when they are absent.
    verify: kept for symmetry with CIFAR-10; torchvision does not checksum MNIST files on disk,
        so both settings only check existence and shapes.
    """

    name = "mnist"
    num_classes = 10
    in_channels = 1
    image_size = 28
    classes = tuple(str(i) for i in range(10))

    def __init__(self, root: str | None = None, download: bool = True, verify: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root, self.download_allowed, self.verify = resolve_data_root(root), download, verify

    def _missing_message(self, cause: object) -> str:
        raw = self.root / "MNIST" / "raw"
        return (
            f"MNIST not found in {raw} ({cause}). Put the four IDX files {', '.join(MNIST_FILES)} "
            f"(uncompressed, or as .gz) in that folder, or run once with network access and "
            f"dataset.download=true. The root comes from dataset.root, else $EXPLAINLAB_DATA, else ./data."
        )

    def download(self) -> None:
        if not self.download_allowed:
            return
        try:
            MNIST(str(self.root), train=True, download=True)
        except Exception as err:  # torchvision raises RuntimeError/URLError when offline
            raise DatasetNotFoundError(self._missing_message(f"download failed: {err}")) from err

    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            ds = MNIST(str(self.root), train=train, download=False)
        except RuntimeError as err:
            raise DatasetNotFoundError(self._missing_message("files absent")) from err
        return ds.data.unsqueeze(1), ds.targets.long()
