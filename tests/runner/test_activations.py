"""Activation extraction: factored taps, the storage plan, and cache keys per form."""

from __future__ import annotations

from pathlib import Path

import torch

from explainlab.methods.library import FactoredHAPs, unit_rows
from explainlab.models.mnist_nets import MnistCNN
from explainlab.runner.activations import FeatureCache, cached_split_features, extract, plan_storage


class _Images:
    """A tiny stand-in data set: dataset[a:b] -> (images, labels)."""

    def __init__(self, n: int = 24) -> None:
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: slice) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


def test_plan_factors_the_mnist_cnn_convolutions() -> None:
    torch.manual_seed(0)
    model = MnistCNN().eval()
    example = torch.rand(1, 1, 28, 28)
    factored, dtypes = plan_storage(model, ["conv1", "conv2", "fc1", "fc2"], example, torch.float16)
    assert factored == ["conv1", "conv2"]  # 785 < 21,632 and 21,633 < 36,864; fc1/fc2 do not shorten
    # conv1's float32 factors (2 x 785) are smaller than its float16 pattern (21,632); conv2's are not.
    assert dtypes == {"conv1": torch.float32, "conv2": torch.float16, "fc1": torch.float16, "fc2": torch.float16}
    assert plan_storage(model, ["conv1"], example, torch.float16, factor=False) == ([], {"conv1": torch.float16})


def test_plan_factors_a_cifar_resnet_conv1_only() -> None:
    from explainlab.models.cifar_resnet import cifar_resnet

    model = cifar_resnet("resnet20").eval()
    taps = ["conv1", "layer1", "layer2", "layer3", "linear"]
    factored, dtypes = plan_storage(model, taps, torch.rand(1, 3, 32, 32), torch.float32)
    assert factored == ["conv1"] and dtypes["conv1"] == torch.float32  # 3,073 instead of 16,384


def test_extracted_factors_give_the_plain_cosines() -> None:
    torch.manual_seed(0)
    model = MnistCNN().eval()
    data = _Images()
    batches = [data[0:10], data[10:24]]
    plain = extract(model, batches, ["conv1", "conv2"])
    factored = extract(model, batches, ["conv1", "conv2"], factored=["conv1", "conv2"], with_logits=False)
    for layer, width in (("conv1", 785), ("conv2", 21633)):
        assert factored[layer].shape == (24, 2, width)
        q, k = unit_rows(FactoredHAPs(factored[layer]))
        x, _ = unit_rows(plain[layer])
        assert torch.allclose(q @ k.T, x @ x.T, atol=2e-5)


def test_cache_keeps_factored_and_plain_forms_apart(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MnistCNN().eval()
    cache = FeatureCache(tmp_path)
    common = {"spec": {"model": "m", "data": "d", "split": "test"}, "cache": cache, "batch_size": 8, "device": "cpu"}
    plain = cached_split_features(model, _Images(), ["conv1"], dtype=torch.float32, **common)
    factored = cached_split_features(model, _Images(), ["conv1"], dtype=torch.float32, factored=["conv1"], **common)
    assert plain["conv1"].shape == (24, 21632) and factored["conv1"].shape == (24, 2, 785)
    again = cached_split_features(model, _Images(), ["conv1"], dtype=torch.float32, factored=["conv1"], **common)
    assert torch.equal(again["conv1"], factored["conv1"])
    assert len(list((tmp_path / "haps").glob("*.pt"))) == 4  # conv1 plain, conv1 factored, logits, labels
