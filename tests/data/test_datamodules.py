"""Data modules: shapes, pixel range, deterministic splits, limits, offline data and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from explainlab.data import CIFAR10DataModule, DigitsDataModule, MNISTDataModule, SyntheticDataModule
from explainlab.data.cifar10 import read_cifar10_batch
from explainlab.errors import ConfigValueError, DataFileError, DatasetNotFoundError


def test_digits_is_real_sklearn_data() -> None:
    from sklearn.datasets import load_digits

    dm = DigitsDataModule(val_size=0.1)
    train, val, test = (dm.dataset(s) for s in ("train", "val", "test"))
    assert len(train) + len(val) + len(test) == len(load_digits().images) == 1797
    x, y = test.pixels(), test.labels
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and set(y.tolist()) == set(range(10))


def test_split_is_deterministic_and_seeded() -> None:
    a = SyntheticDataModule(seed=3).dataset("val").images
    b = SyntheticDataModule(seed=3).dataset("val").images
    c = SyntheticDataModule(seed=4).dataset("val").images
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_limits_keep_the_first_images_in_order() -> None:
    full = SyntheticDataModule(n_test=50).dataset("test")
    limited = SyntheticDataModule(n_test=50, limit_test=7).dataset("test")
    assert torch.equal(limited.images, full.images[:7])


@pytest.mark.parametrize("shape", [(1, 16), (3, 32)])
def test_synthetic_shapes_and_class_structure(shape: tuple[int, int]) -> None:
    channels, size = shape
    dm = SyntheticDataModule(in_channels=channels, image_size=size, num_classes=3, noise=0.05, val_size=0)
    data = dm.dataset("train")
    x, y = data.pixels(), data.labels
    assert x.shape[1:] == (channels, size, size) and torch.bincount(y).min() > 0
    # A nearest-class-mean classifier separates the planted templates.
    means = torch.stack([x[y == c].mean(0) for c in range(3)])
    pred = torch.cdist(x.flatten(1), means.flatten(1)).argmin(1)
    assert (pred == y).float().mean() > 0.95


def test_batches_come_as_float_pixels() -> None:
    dm = SyntheticDataModule(batch_size=16)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"batch_size": 0}, "dataset.batch_size"),
        ({"val_size": 1.5}, "dataset.val_size"),
        ({"limit_test": -1}, "dataset.limit_test"),
        ({"num_classes": 7}, "dataset.num_classes"),
    ],
)
def test_bad_values_name_their_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigValueError, match=key):
        DigitsDataModule(**kwargs)


def test_missing_offline_data_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "MNIST" / "raw")):
        MNISTDataModule(root=str(tmp_path), download=False).dataset("test")
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        CIFAR10DataModule(root=str(tmp_path), download=False, verify=False).dataset("test")


def test_data_root_defaults_to_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXPLAINLAB_DATA", str(tmp_path))
    assert MNISTDataModule().root == tmp_path.resolve()


def test_cifar_reader_refuses_code_in_pickles(tmp_path: Path) -> None:
    import pickle

    bad = tmp_path / "data_batch_1"
    bad.write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0], "x": Path("/")}))
    with pytest.raises(DataFileError, match="data_batch_1 is not a CIFAR-10 batch: refusing"):
        read_cifar10_batch(bad)


def _batch(**entry: object) -> bytes:
    import pickle

    return pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 9]} | entry)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (_batch()[:100], "truncated"),
        (__import__("pickle").dumps([1, 2]), "expected a dict with 'data' and 'labels'"),
        (_batch(data=np.zeros((2, 3072), np.float32)), "uint8 array of pixels 0-255, found float32"),
        (_batch(labels=[0, 10]), r"labels must be integers in \[0, 9\].*\[10\]"),
        (_batch(labels=[0, -1]), r"labels must be integers in \[0, 9\]"),
        (_batch(labels=[0.5, 1.0]), "labels must be integers"),
        (_batch(labels=[0]), "expected \\(N, 3072\\) and N labels"),
        (_batch(data=np.zeros((2, 1024), np.uint8)), "expected \\(N, 3072\\) and N labels"),
    ],
    ids=["empty", "truncated", "wrong structure", "float pixels", "label 10", "label -1", "float labels",
         "too few labels", "wrong image size"],
)  # fmt: skip
def test_damaged_cifar_batch_is_refused_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "data_batch_3"
    bad.write_bytes(content)
    with pytest.raises(DataFileError, match=message) as err:
        read_cifar10_batch(bad)
    assert str(bad) in str(err.value)


def test_local_cifar_copy_with_verify_false(tmp_path: Path) -> None:
    """A re-encoded copy (md5 differs) loads with verify=false; torchvision's check refuses it."""
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": list(range(4))}
        (folder / name).write_bytes(pickle.dumps(entry))
    dm = CIFAR10DataModule(root=str(tmp_path), download=False, verify=False, val_size=0)
    assert dm.dataset("train").images.shape == (20, 3, 32, 32)
    with pytest.raises(DatasetNotFoundError, match="verify=false"):
        CIFAR10DataModule(root=str(tmp_path), download=False, verify=True).dataset("train")


@pytest.mark.shared_data
def test_shared_mnist_and_cifar(shared_data: Path) -> None:
    mnist = MNISTDataModule(root=str(shared_data), download=False, val_size=0)
    assert len(mnist.dataset("train")) == 60000 and len(mnist.dataset("test")) == 10000
    cifar = CIFAR10DataModule(root=str(shared_data), download=False, verify=False, val_size=5000)
    assert len(cifar.dataset("train")) == 45000 and len(cifar.dataset("test")) == 1000
    assert cifar.dataset("test").images.dtype == torch.uint8
    # First test image of CIFAR-10 is a cat (label 3).
    assert int(cifar.dataset("test").labels[0]) == 3


def test_device_batch_loader_shards_and_reshuffles() -> None:
    from explainlab.data.base import DeviceBatchLoader

    data = SyntheticDataModule(n_train=40, val_size=0).dataset("train")
    ranks = [
        DeviceBatchLoader(data, 8, shuffle=True, seed=0, device=torch.device("cpu"), rank=r, world_size=2)
        for r in (0, 1)
    ]
    seen = [torch.cat([y for _, y in loader]) for loader in ranks]
    assert len(seen[0]) == len(seen[1]) == 20 and len(ranks[0]) == 3
    first = [x for x, _ in ranks[0]]  # epoch advanced by the loop above: a different order
    ranks[0].set_epoch(0)
    again = [x for x, _ in ranks[0]]
    assert not torch.equal(first[0], again[0])
