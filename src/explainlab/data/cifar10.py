"""CIFAR-10 through torchvision, or from a local copy without torchvision's checksum test."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10

from explainlab.data.base import ImageDataModule
from explainlab.data.paths import resolve_data_root
from explainlab.errors import DatasetNotFoundError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR batch holds (dicts, lists, numpy arrays), nothing executable."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} from a CIFAR-10 batch file")


def read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python-format CIFAR-10 batch: uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    with open(path, "rb") as f:
        entry = _ArrayUnpickler(f, encoding="latin1").load()
    labels = entry.get("labels", entry.get("fine_labels"))
    data = np.asarray(entry["data"], dtype=np.uint8)
    if labels is None or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DatasetNotFoundError(
            f"{path} is not a CIFAR-10 batch: data {data.shape}, labels "
            f"{None if labels is None else len(labels)} (expected (N, 3072) and N labels)."
        )
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10, 32x32 colour images of 10 classes.

    root: folder that contains `cifar-10-batches-py/` (torchvision layout).
    download: fetch the archive when absent (torchvision; needs network).
    verify: true reads through torchvision, which checks the published md5 of every batch file;
        false reads a local copy (e.g. a re-encoded one) without the checksum test, checking that
        every file exists and holds (N, 3072) uint8 images with N labels instead.
    """

    name = "cifar10"
    num_classes = 10
    in_channels = 3
    image_size = 32
    classes = CIFAR10_CLASSES

    def __init__(self, root: str | None = None, download: bool = True, verify: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root, self.download_allowed, self.verify = resolve_data_root(root), download, verify

    @property
    def folder(self) -> Path:
        return self.root / "cifar-10-batches-py"

    def _missing_message(self, cause: object) -> str:
        return (
            f"CIFAR-10 not found or not readable in {self.folder} ({cause}). The folder must hold the "
            f"python-format batches {', '.join(TRAIN_BATCHES)}, {TEST_BATCH} and batches.meta "
            f"(torchvision layout). A copy whose md5 differs from the published files needs "
            f"dataset.verify=false. Or run with network access and dataset.download=true. The root comes "
            f"from dataset.root, else $EXPLAINLAB_DATA, else ./data."
        )

    def download(self) -> None:
        if not self.download_allowed or (not self.verify and self._local_files_exist()):
            return
        try:
            CIFAR10(str(self.root), train=True, download=True)
        except Exception as err:
            raise DatasetNotFoundError(self._missing_message(f"download failed: {err}")) from err

    def _local_files_exist(self) -> bool:
        return all((self.folder / name).is_file() for name in (*TRAIN_BATCHES, TEST_BATCH))

    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if self.verify:
            try:
                ds = CIFAR10(str(self.root), train=train, download=False)
            except RuntimeError as err:
                raise DatasetNotFoundError(self._missing_message(err)) from err
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
            return images, torch.as_tensor(ds.targets, dtype=torch.long)
        names = TRAIN_BATCHES if train else (TEST_BATCH,)
        missing = [n for n in names if not (self.folder / n).is_file()]
        if missing:
            raise DatasetNotFoundError(self._missing_message(f"missing {', '.join(missing)}"))
        parts = [read_cifar10_batch(self.folder / n) for n in names]
        images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        return images, labels
