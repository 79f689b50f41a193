"""CIFAR-10 through torchvision, or from a local copy without torchvision's checksum test."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10

from explainlab.data.base import ImageDataModule
from explainlab.data.paths import resolve_data_root
from explainlab.errors import DataFileError, DatasetNotFoundError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class _Refused(pickle.UnpicklingError):
    """A pickle asks for something a CIFAR batch never holds."""


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
        raise _Refused(f"refusing to unpickle {module}.{name} from a CIFAR-10 batch file")


def read_cifar10_batch(path: Path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One python-format CIFAR-10 batch: uint8 images (N, 3, 32, 32) and int64 labels (N,).

    Refuses, naming the file (DataFileError): an empty or truncated file, one that is not a pickled
    dict of `data` and `labels`, images that are not (N, 3072) uint8 (float pixels would wrap
    silently in a cast), labels that are not integers in [0, num_classes) or not one per image.
    """
    try:
        with open(path, "rb") as f:
            entry = _ArrayUnpickler(f, encoding="latin1").load()
    except _Refused as err:
        raise DataFileError(f"{path} is not a CIFAR-10 batch: {err} (nothing from it was run).") from err
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError) as err:
        size = path.stat().st_size if path.is_file() else 0
        raise DataFileError(
            f"{path} is not a readable CIFAR-10 batch ({'empty file' if size == 0 else f'{size} bytes'}: "
            f"{type(err).__name__}: {err}); it may be truncated: copy it again."
        ) from err
    if not isinstance(entry, dict) or "data" not in entry or not ({"labels", "fine_labels"} & set(entry)):
        keys = sorted(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__
        raise DataFileError(f"{path} is not a CIFAR-10 batch: expected a dict with 'data' and 'labels', found {keys}.")
    data = entry["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise DataFileError(f"{path}: CIFAR-10 images must be a uint8 array of pixels 0-255, found {kind}.")
    labels = entry.get("labels", entry.get("fine_labels"))
    try:
        label_array = np.asarray(labels)
    except Exception:  # ragged
        label_array = np.asarray([], dtype=object)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or label_array.ndim != 1 or len(label_array) != len(data):
        raise DataFileError(
            f"{path} is not a CIFAR-10 batch: data {data.shape}, labels {label_array.shape} "
            f"(expected (N, 3072) and N labels)."
        )
    integers = label_array.dtype.kind in "iu"
    outside = label_array[(label_array < 0) | (label_array >= num_classes)] if integers else label_array
    if len(outside):
        raise DataFileError(
            f"{path}: labels must be integers in [0, {num_classes - 1}], found {label_array.dtype} "
            f"values such as {outside[:3].tolist()}."
        )
    return data.reshape(-1, 3, 32, 32), label_array.astype(np.int64)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10, 32x32 colour images of 10 classes.

    root: folder that contains `cifar-10-batches-py/` (torchvision layout).
    download: fetch the archive when absent (torchvision; needs network).
    verify: true reads through torchvision, which checks the published md5 of every batch file;
        false reads a local copy (e.g. a re-encoded one) without the checksum test, checking that
        every file exists and holds (N, 3072) uint8 images with N labels in 0-9 instead (a bad file
        is refused, named: `read_cifar10_batch`).
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
