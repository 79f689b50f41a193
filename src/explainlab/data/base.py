"""Image-classification data held as tensors, with deterministic splits and batched loading.

Every data module yields images as float32 in [0, 1] pixel space, shape (B, C, H, W), and int64
labels (B,). Normalisation belongs to the model (see `explainlab.models.pixel_space`), so attacks
and attributions work in pixel units.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from explainlab.errors import ConfigValueError, check_float, check_int


class ImageTensorDataset(Dataset):
    """Images (N, C, H, W) as uint8 (0..255) or float in [0, 1], and labels (N,).

    `__getitems__` fetches a whole batch with one indexing op (no per-sample Python work).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"expected images (N, C, H, W) and labels (N,), got {tuple(images.shape)} and {tuple(labels.shape)}"
            )
        self.images, self.labels = images, labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def _fetch(self, index: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[index]
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        return x, self.labels[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._fetch(index)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self._fetch(torch.as_tensor(indices, dtype=torch.long))

    def pixels(self) -> torch.Tensor:
        """All images as float32 in [0, 1], (N, C, H, W)."""
        return self._fetch(slice(None))[0]


class EpochShuffleSampler(torch.utils.data.Sampler[int]):
    """Random order that depends only on (seed, epoch): a resumed run sees the same batches as an
    uninterrupted one. Lightning calls `set_epoch` at the start of every epoch."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def batch_collate(batch: Any) -> Any:
    """`__getitems__` already returns a collated batch; single samples go through default collate."""
    if isinstance(batch, tuple):
        return batch
    return torch.utils.data.default_collate(batch)


class DeviceBatchLoader:
    """Batches straight from tensors already on the accelerator (small data sets, no workers).

    Shards by `rank::world_size` so DDP processes see disjoint samples, like DistributedSampler
    without padding; `set_epoch` reshuffles deterministically from (seed, epoch).
    """

    def __init__(
        self,
        dataset: ImageTensorDataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        self.x = dataset.pixels().to(device)
        self.y = dataset.labels.to(device)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last, self.epoch = rank, world_size, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.y)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        return order[self.rank :: self.world_size].to(self.x.device)

    def __len__(self) -> int:
        n = len(range(self.rank, len(self.y), self.world_size))
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        idx = self._indices()
        for b in range(len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.x[sel], self.y[sel]
        self.epoch += 1


class ImageDataModule(pl.LightningDataModule):
    """Base for the data sets: subclasses implement `load_split(train)` and class attributes.

    batch_size: training batch; eval_batch_size: validation/test batch.
    val_size: images held out of the training split for validation, as a count (int) or a
        fraction in [0, 1); taken by a seeded permutation, so the split is deterministic.
    limit_train / limit_val / limit_test: keep only the first N of each split (dataset order for
        test, split order for train/val), for quick runs.
    on_device: hold the data on the accelerator and batch there (GPU speed option).
    """

    name: str = "base"
    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 28
    classes: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        batch_size: int = 64,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        val_size: float | int = 0.1,
        limit_train: int | None = None,
        limit_val: int | None = None,
        limit_test: int | None = None,
        seed: int = 0,
        on_device: bool = False,
        pin_memory: bool = False,
        num_classes: int | None = None,
        in_channels: int | None = None,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        # The config repeats the data set's shape so that models can interpolate it; it must agree.
        for key, given in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size)):
            if given is not None and given != getattr(self, key):
                raise ConfigValueError(f"dataset.{key}", given, f"{getattr(self, key)} for {self.name}")
        check_int("dataset.batch_size", batch_size, minimum=1)
        check_int("dataset.eval_batch_size", eval_batch_size, minimum=1)
        check_int("dataset.num_workers", num_workers, minimum=0)
        for key, value in (("limit_train", limit_train), ("limit_val", limit_val), ("limit_test", limit_test)):
            check_int(f"dataset.{key}", value, minimum=1, optional=True)
        if isinstance(val_size, float):
            check_float("dataset.val_size", val_size, low=0.0, high=1.0)
        else:
            check_int("dataset.val_size", val_size, minimum=0)
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.val_size, self.seed, self.on_device, self.pin_memory = val_size, seed, on_device, pin_memory
        self.limits = {"train": limit_train, "val": limit_val, "test": limit_test}
        self.splits: dict[str, ImageTensorDataset] = {}

    # -- to implement -------------------------------------------------------------------------
    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Return images (N, C, H, W) uint8 or float in [0, 1] and labels (N,) of one split."""
        raise NotImplementedError

    def download(self) -> None:
        """Fetch the data when it is absent and downloading is allowed (rank 0 only)."""

    # -- Lightning hooks ----------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.download()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        train_x, train_y = self.load_split(train=True)
        test_x, test_y = self.load_split(train=False)
        self._check_shapes(train_x, "train")
        self._check_shapes(test_x, "test")
        n = len(train_y)
        n_val = int(round(self.val_size * n)) if isinstance(self.val_size, float) else int(self.val_size)
        if n_val >= n:
            raise ValueError(f"dataset.val_size={self.val_size} leaves no training images (train split has {n}).")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
        parts = {
            "train": (train_x[train_idx], train_y[train_idx]),
            "val": (train_x[val_idx], train_y[val_idx]),
            "test": (test_x, test_y),
        }
        for split, (x, y) in parts.items():
            limit = self.limits[split]
            if limit is not None:
                x, y = x[:limit], y[:limit]
            self.splits[split] = ImageTensorDataset(x, y)

    def _check_shapes(self, images: torch.Tensor, split: str) -> None:
        expected = (self.in_channels, self.image_size, self.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"{self.name} {split} images have shape {tuple(images.shape)}, expected (N, *{expected}).")

    def dataset(self, split: str) -> ImageTensorDataset:
        """The tensors of `split` ('train', 'val' or 'test'); calls `setup` when needed."""
        if not self.splits:
            self.prepare_data()
            self.setup()
        return self.splits[split]

    def _loader(self, split: str, shuffle: bool) -> Any:
        data = self.dataset(split)
        batch = self.batch_size if split == "train" else self.eval_batch_size
        trainer = getattr(self, "trainer", None)
        if self.on_device and trainer is not None and trainer.strategy.root_device.type != "cpu":
            return DeviceBatchLoader(
                data,
                batch,
                shuffle=shuffle,
                seed=self.seed,
                device=trainer.strategy.root_device,
                rank=trainer.global_rank,
                world_size=trainer.world_size,
            )
        return DataLoader(
            data,
            batch_size=batch,
            sampler=EpochShuffleSampler(len(data), self.seed) if shuffle else None,
            num_workers=self.num_workers,
            collate_fn=batch_collate,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> Any:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> Any:
        # No validation split (val_size=0): no validation loop rather than an empty loader.
        return self._loader("val", shuffle=False) if len(self.dataset("val")) else []

    def test_dataloader(self) -> Any:
        return self._loader("test", shuffle=False)

    def loader(self, split: str) -> Any:
        """Unshuffled loader over any split, for evaluation and feature extraction."""
        return self._loader(split, shuffle=False)
