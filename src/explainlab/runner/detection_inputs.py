"""Inputs of the detection study: pooled layer features of whole splits (cached like the library
study's patterns), what each detector reads of a set of images, and out-of-distribution images.
The attacked images come from `runner.attacked`, shared with the library study."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from explainlab.methods.detection import Inputs
from explainlab.methods.library import FactoredHAPs
from explainlab.runner.activations import FeatureCache, extract


def pool(activation: torch.Tensor) -> torch.Tensor:
    """(B, D): per-channel spatial means of (B, C, H, W) maps (Lee et al. 2018), vectors as they are."""
    return activation.flatten(2).mean(2) if activation.dim() > 2 else activation.flatten(1)


def pooled_features(
    model: nn.Module, batches: Iterable, layers: Sequence[str], *, device: torch.device, progress: bool = False,
    total: int | None = None,
) -> dict[str, torch.Tensor]:
    """{layer: (N, D) float32 pooled outputs, 'logits': (N, C), 'labels': (N,)} of batches (x, y):
    the one extractor (`runner.activations.extract`) with maps averaged to 1 x 1 (channel means,
    Lee et al. 2018), vectors as they are. total: number of batches, for the progress bar."""
    return extract(model, batches, layers, device=device, max_side=1, progress=progress, total=total,
                   desc="pooled features")  # fmt: skip


def cached_pooled_split(
    model: nn.Module,
    dataset: Any,
    layers: Sequence[str],
    *,
    spec: dict[str, Any],
    cache: FeatureCache,
    batch_size: int,
    device: torch.device,
    limit: int | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Pooled features, logits and labels of the first `limit` images (None = all) of a split; read
    from `cache` when present (key: spec + layer + 'channel_mean' + limit), else extracted and written,
    under the cache's per-key lock (parallel jobs extract once)."""
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    wanted = [*layers, "logits", "labels"]
    key = {**spec, "form": "channel_mean", "images": n}
    # A second process pooling the same split waits here, then reads what the first one wrote.
    with cache.lock({**key, "layers": sorted(wanted)}):
        found = {name: cache.get({**key, "layer": name}) for name in wanted}
        if any(v is None for v in found.values()):
            batches = (dataset[i : min(i + batch_size, n)] for i in range(0, n, batch_size))
            fresh = pooled_features(model, batches, layers, device=device, progress=progress,
                                    total=-(-n // batch_size))  # fmt: skip
            for name in wanted:
                cache.put({**key, "layer": name}, fresh[name])
            found = fresh
    return {name: found[name] for name in wanted}


def detector_inputs(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    feature_layers: Sequence[str],
    hap_layers: Sequence[str],
    storage: tuple[Sequence[str], Any],
    device: torch.device,
    batch_size: int,
) -> Inputs:
    """What every detector reads of `images`: pooled features of `feature_layers`, logits and (when
    `hap_layers`) the library study's patterns, held as `plan_storage` decided (factored, dtype)."""
    batches = [(images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    pooled = pooled_features(model, batches, feature_layers, device=device)
    forms: dict[str, Any] = {"pooled": pooled}
    if hap_layers:
        factored, dtypes = storage
        haps = extract(model, batches, hap_layers, device=device, dtype=dtypes, with_logits=False, factored=factored)
        forms["haps"] = {k: FactoredHAPs(v) if k in factored else v for k, v in haps.items() if k in hap_layers}
    return Inputs(forms, pooled["logits"], labels)


def as_input_shape(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """Images of another data set in the model's input shape, in [0, 1]: grey-scaled (channel mean)
    or repeated to `channels`, resized (bilinear) to size x size."""
    images = images.float()
    if images.shape[1] != channels:
        images = images.mean(1, keepdim=True).expand(-1, channels, -1, -1)
    if images.shape[-1] != size or images.shape[-2] != size:
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images.clamp(0, 1).contiguous()


OUTLIER_SETS = ("uniform_noise", "mnist", "cifar10", "digits")


def outlier_images(name: str, n: int, channels: int, size: int, *, seed: int, data_dir: str | None) -> torch.Tensor:
    """n out-of-distribution images in the model's input shape: 'uniform_noise' (seeded U(0, 1)) or
    the first n test images of 'mnist', 'cifar10' (read without the checksum test) or 'digits'."""
    from explainlab.data import CIFAR10DataModule, DigitsDataModule, MNISTDataModule

    if name == "uniform_noise":
        return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))
    modules = {
        "mnist": lambda: MNISTDataModule(root=data_dir, download=False, val_size=0, limit_test=n),
        "cifar10": lambda: CIFAR10DataModule(root=data_dir, download=False, verify=False, val_size=0, limit_test=n),
        "digits": lambda: DigitsDataModule(val_size=0, limit_test=n),
    }
    images, _ = modules[name]().dataset("test")[0:n]
    return as_input_shape(images, channels, size)
