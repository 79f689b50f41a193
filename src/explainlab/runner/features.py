"""Hidden activation patterns (HAPs) of whole data splits, batched, and cached on disk.

A cache entry holds one layer of one split for one set of weights; it is keyed by the model's
weight fingerprint, the data spec, the split and the layer, stores that key inside, and is read
with `torch.load(weights_only=True, mmap=True)` and checked against the key before use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from explainlab.data.base import ImageTensorDataset
from explainlab.errors import CheckpointError
from explainlab.methods.library.network import MapUnits
from explainlab.models.layers import ActivationRecorder, resolve_layers
from explainlab.results.io import atomic_path


class _Enough(Exception):
    """Raised inside a hook to stop a forward pass once every requested layer has fired."""


@torch.no_grad()
def extract(
    model: nn.Module,
    batches: Iterable,
    layers: Sequence[str],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    with_logits: bool = True,
    progress: bool = False,
    total: int | None = None,
) -> dict[str, torch.Tensor]:
    """Flattened outputs of `layers` for every batch (x, y), on the CPU, in loader order.

    Returns {layer: (N, D) in `dtype`, 'logits': (N, K) float32 (if with_logits), 'labels': (N,)}.
    Without logits the forward pass stops after the last requested layer has fired. When the
    loader knows its data set's length, outputs are preallocated (no second copy for a concat).
    """
    model.eval().to(device)
    modules = resolve_layers(model, layers, key="method.layers")
    out: dict[str, list[torch.Tensor]] = {name: [] for name in [*layers, "logits", "labels"]}
    n_total = len(batches.dataset) if hasattr(batches, "dataset") else None
    filled: dict[str, torch.Tensor] = {}
    row = 0
    fired: set[str] = set()

    def stop_when_done(name: str):
        def hook(*_: Any) -> None:
            fired.add(name)
            if not with_logits and fired >= set(layers):
                raise _Enough

        return hook

    # The recorder's hooks are registered first, so they run before the stopping hooks.
    with ActivationRecorder(model, layers) as rec:
        handles = [m.register_forward_hook(stop_when_done(n)) for n, m in modules.items()]
        try:
            for x, y in tqdm(batches, desc="activations", total=total, disable=not progress, leave=False):
                fired.clear()
                try:
                    logits = model(x.to(device))
                    out["logits"].append(logits.float().cpu())
                except _Enough:
                    pass
                for name in layers:
                    act = rec.activations[name].flatten(1)
                    if n_total is None:
                        out[name].append(act.to(dtype).cpu())
                        continue
                    if name not in filled:
                        filled[name] = torch.empty(n_total, act.shape[1], dtype=dtype)
                    filled[name][row : row + len(act)] = act
                row += len(y)
                out["labels"].append(y.cpu())
        finally:
            for h in handles:
                h.remove()
    result = {k: torch.cat(v) for k, v in out.items() if v}
    result.update({k: v[:row] for k, v in filled.items()})
    return result


class FeatureCache:
    """`<cache_dir>/haps/<key>.pt`: one layer of one split, keyed by weights, data, split and layer."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.folder = Path(cache_dir) / "haps"

    @staticmethod
    def _key(spec: dict[str, Any]) -> tuple[str, str]:
        text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:24], text

    def get(self, spec: dict[str, Any]) -> torch.Tensor | None:
        digest, text = self._key(spec)
        path = self.folder / f"{digest}.pt"
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:
            raise CheckpointError(f"activation cache {path} is unreadable ({err}); delete it.") from err
        if not isinstance(entry, dict) or entry.get("spec") != text:
            raise CheckpointError(f"activation cache {path} was written for another key; delete it.")
        return entry["values"]

    def put(self, spec: dict[str, Any], values: torch.Tensor) -> Path:
        digest, text = self._key(spec)
        path = self.folder / f"{digest}.pt"
        with atomic_path(path) as tmp:
            torch.save({"spec": text, "values": values.contiguous()}, tmp)
        return path


def extract_dataset(
    model: nn.Module,
    dataset: ImageTensorDataset,
    layers: Sequence[str],
    *,
    batch_size: int,
    device: torch.device | str,
    dtype: torch.dtype,
    with_logits: bool = True,
    map_units: MapUnits | None = None,
) -> dict[str, torch.Tensor]:
    """`extract` over a whole split in fixed batches [u*batch_size, (u+1)*batch_size); `map_units`
    may run the batches on several DDP ranks (identical results, gathered in data set order)."""
    map_units = map_units or (lambda n, work: [work(u) for u in range(n)])

    def batch(unit: int) -> dict[str, torch.Tensor]:
        x, y = dataset[unit * batch_size : (unit + 1) * batch_size]
        return extract(model, [(x, y)], layers, device=device, dtype=dtype, with_logits=with_logits)

    parts = map_units(-(-len(dataset) // batch_size), batch)
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def cached_split_features(
    model: nn.Module,
    dataset: ImageTensorDataset,
    layers: Sequence[str],
    *,
    spec: dict[str, Any],
    cache: FeatureCache | None,
    batch_size: int,
    device: torch.device | str,
    dtype: torch.dtype,
    map_units: MapUnits | None = None,
    write: bool = True,
) -> dict[str, torch.Tensor]:
    """Layers, logits and labels of a whole split; read from `cache` when present, else extracted
    (and written when `write`, i.e. on the main process).

    spec: identifies weights and data (e.g. {'model': fingerprint, 'data': ..., 'split': 'train'}).
    """
    wanted = [*layers, "logits", "labels"]

    def entry_spec(name: str) -> dict[str, Any]:
        return {**spec, "layer": name, "dtype": str(dtype) if name in layers else "native"}

    found = {name: cache.get(entry_spec(name)) for name in wanted} if cache else {}
    missing = [name for name in layers if found.get(name) is None]
    if missing or found.get("logits") is None or found.get("labels") is None:
        fresh = extract_dataset(
            model,
            dataset,
            missing or list(layers[:1]),
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            map_units=map_units,
        )
        for name, values in fresh.items():
            if found.get(name) is None:
                found[name] = values
                if cache and write:
                    cache.put(entry_spec(name), values)
    return {name: found[name] for name in wanted}
