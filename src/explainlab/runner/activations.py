"""The one activation extractor every study uses: batched forward passes in evaluation mode that
collect the outputs of named layers (forward hooks), the logits and the labels, on the CPU in data
order; whole splits in fixed batches (split over DDP ranks by `map_units`) and cached on disk.

A cache entry holds one layer of one split for one set of weights; it is keyed by the model's
weight fingerprint, the data spec, the split and the layer, stores that key inside, and is read
with `torch.load(weights_only=True, mmap=True)` and checked against the key and its content
(shape, dtype, hash) before use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from explainlab.data.base import ImageTensorDataset
from explainlab.methods.library.patterns import affine_factors, factorable
from explainlab.models.layers import ActivationRecorder, resolve_layers
from explainlab.results.cache import EntryRejected, EntryStore, check_described, describe

# map_units(n_units, work) -> [work(0), ..., work(n_units - 1)], possibly over several processes
# (`runner.distributed.Workers.mapper`).
MapUnits = Callable[[int, Callable[[int], Any]], list]


def eval_device(accelerator: str | None) -> torch.device:
    """CUDA when available and not forced to the CPU by the trainer's accelerator."""
    return torch.device("cuda" if torch.cuda.is_available() and accelerator != "cpu" else "cpu")


def first_batches(dataset: ImageTensorDataset, n: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first `n` samples of `dataset` (clipped to its length) as (x, y) batches of `batch_size`,
    in data set order."""
    n = min(n, len(dataset))
    return [dataset.__getitems__(list(range(i, min(i + batch_size, n)))) for i in range(0, n, batch_size)]


def _dtype_per_layer(dtype: torch.dtype | Mapping[str, torch.dtype], layers: Sequence[str]) -> dict[str, torch.dtype]:
    return dict(dtype) if isinstance(dtype, Mapping) else dict.fromkeys(layers, dtype)


class _Enough(Exception):
    """Raised inside a hook to stop a forward pass once every requested layer has fired."""


@torch.no_grad()
def extract(
    model: nn.Module,
    batches: Iterable,
    layers: Sequence[str],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | Mapping[str, torch.dtype] = torch.float32,
    with_logits: bool = True,
    progress: bool = False,
    total: int | None = None,
    factored: Collection[str] = (),
    flatten: bool = True,
    max_side: int | None = None,
    desc: str = "activations",
) -> dict[str, torch.Tensor]:
    """Outputs of `layers` for every batch (x, y), on the CPU, in loader order.

    Returns {layer: (N, D) in `dtype` (one dtype, or one per layer), 'logits': (N, K) float32 (if
    with_logits), 'labels': (N,)}. flatten=False keeps each layer's own shape (N, ...); max_side
    average-pools 4-D maps to at most max_side x max_side positions first (None: as they are).
    Layers named in `factored` (affine taps) give their stacked factors (N, 2, d + 1) instead
    (`explainlab.methods.library.FactoredHAPs`). Without logits the forward pass stops after the
    last requested layer has fired. When the loader knows its data set's length, outputs are
    preallocated (no second copy for a concat). Forward passes run under torch.inference_mode; the
    returned tensors are ordinary ones (usable in autograd as inputs).
    """
    model.eval().to(device)
    modules = resolve_layers(model, layers, key="method.layers")
    dtypes = _dtype_per_layer(dtype, layers)
    factors: dict[str, torch.Tensor] = {}

    def factor(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            factors[name] = affine_factors(module, inputs[0], output)

        return hook

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

    def stored(name: str, act: torch.Tensor) -> torch.Tensor:
        if name in factors:
            return act
        if max_side is not None and act.dim() == 4 and max(act.shape[-2:]) > max_side:
            act = F.adaptive_avg_pool2d(act, (min(act.shape[-2], max_side), min(act.shape[-1], max_side)))
        return act.flatten(1) if flatten else act

    # The recorder's hooks are registered first, so they run before the stopping hooks.
    with ActivationRecorder(model, layers) as rec:
        handles = [modules[n].register_forward_hook(factor(n)) for n in factored]
        handles += [m.register_forward_hook(stop_when_done(n)) for n, m in modules.items()]
        try:
            for x, y in tqdm(batches, desc=desc, total=total, disable=not progress, leave=False):
                fired.clear()
                try:
                    with torch.inference_mode():
                        logits = model(x.to(device))
                    out["logits"].append(logits.float().cpu())
                except _Enough:
                    pass
                for name in layers:
                    act = stored(name, factors[name] if name in factors else rec.activations[name])
                    if n_total is None:
                        out[name].append(act.to(dtypes[name]).cpu())
                        continue
                    if name not in filled:
                        filled[name] = torch.empty(n_total, *act.shape[1:], dtype=dtypes[name])
                    filled[name][row : row + len(act)] = act
                row += len(y)
                out["labels"].append(y.cpu())
        finally:
            for h in handles:
                h.remove()
    # Concatenated outside inference mode: ordinary tensors, not inference tensors.
    result = {k: torch.cat(v) for k, v in out.items() if v}
    result.update({k: v[:row] for k, v in filled.items()})
    return result


class FeatureCache:
    """`<cache_dir>/haps/<key>.pt`: one layer of one split, keyed by weights, data, split and layer.

    Each entry stores its key's JSON and the values' shape, dtype and a content hash, all checked
    on reading; an unreadable or mismatching entry is moved aside with a warning and recomputed
    (results.cache.EntryStore). `lock(spec)` serialises extraction across processes.
    """

    def __init__(self, cache_dir: str | Path) -> None:
        self.folder = Path(cache_dir) / "haps"
        self.store = EntryStore(self.folder, "activation cache")

    @staticmethod
    def _key(spec: dict[str, Any]) -> tuple[str, str]:
        text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:24], text

    def lock(self, spec: dict[str, Any]) -> AbstractContextManager[None]:
        return self.store.lock(self._key(spec)[0])

    def get(self, spec: dict[str, Any]) -> torch.Tensor | None:
        digest, text = self._key(spec)

        def check(entry: Any) -> None:
            if not isinstance(entry, dict) or entry.get("spec") != text:
                raise EntryRejected("written for another key")
            check_described("values", entry.get("values"), entry.get("described"))

        entry = self.store.load(digest, check, mmap=True)
        return None if entry is None else entry["values"]

    def put(self, spec: dict[str, Any], values: torch.Tensor) -> Path:
        digest, text = self._key(spec)
        values = values.contiguous()
        return self.store.save(digest, {"spec": text, "values": values, "described": describe(values)})


def extract_dataset(
    model: nn.Module,
    dataset: ImageTensorDataset,
    layers: Sequence[str],
    *,
    batch_size: int,
    device: torch.device | str,
    dtype: torch.dtype | Mapping[str, torch.dtype],
    with_logits: bool = True,
    map_units: MapUnits | None = None,
    factored: Collection[str] = (),
) -> dict[str, torch.Tensor]:
    """`extract` over a whole split in fixed batches [u*batch_size, (u+1)*batch_size); `map_units`
    may run the batches on several DDP ranks (identical results, gathered in data set order)."""
    map_units = map_units or (lambda n, work: [work(u) for u in range(n)])

    def batch(unit: int) -> dict[str, torch.Tensor]:
        x, y = dataset[unit * batch_size : (unit + 1) * batch_size]
        return extract(model, [(x, y)], layers, device=device, dtype=dtype, with_logits=with_logits, factored=factored)

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
    dtype: torch.dtype | Mapping[str, torch.dtype],
    map_units: MapUnits | None = None,
    write: bool = True,
    factored: Collection[str] = (),
) -> dict[str, torch.Tensor]:
    """Layers, logits and labels of a whole split; read from `cache` when present, else extracted
    (and written when `write`, i.e. on the main process). Layers in `factored` are held as their
    stacked factors (see `extract`) and cached under their own key.

    spec: identifies weights and data (e.g. {'model': fingerprint, 'data': ..., 'split': 'train'}).
    """
    wanted = [*layers, "logits", "labels"]
    dtypes = _dtype_per_layer(dtype, layers)

    def entry_spec(name: str) -> dict[str, Any]:
        if name not in layers:
            return {**spec, "layer": name, "dtype": "native"}
        form = {"form": "factored"} if name in factored else {}
        return {**spec, "layer": name, "dtype": str(dtypes[name]), **form}

    # A second process extracting the same split waits here, then reads what the first one wrote.
    with cache.lock({**spec, "layers": sorted(wanted)}) if cache and write else nullcontext():
        found = {name: cache.get(entry_spec(name)) for name in wanted} if cache else {}
        missing = [name for name in layers if found.get(name) is None]
        if missing or found.get("logits") is None or found.get("labels") is None:
            fresh = extract_dataset(
                model,
                dataset,
                missing or list(layers[:1]),
                batch_size=batch_size,
                device=device,
                dtype=dtypes,
                map_units=map_units,
                factored=[name for name in factored if name in missing],
            )
            for name, values in fresh.items():
                if found.get(name) is None:
                    found[name] = values
                    if cache and write:
                        cache.put(entry_spec(name), values)
    return {name: found[name] for name in wanted}


@torch.no_grad()
def plan_storage(
    model: nn.Module, layers: Sequence[str], example: torch.Tensor, dtype: torch.dtype, *, factor: bool = True
) -> tuple[list[str], dict[str, torch.dtype]]:
    """Which taps to hold factored through their inputs, and each tap's storage dtype.

    example: one input batch (1, ...) for a probing forward pass. A tap is factored (with `factor`)
    when it is an affine module whose input is shorter than its output
    (`explainlab.methods.library.factorable`). Factors are stored in float32 unless that takes more
    room than the plain pattern in `dtype` (then in `dtype`): they hold differences of larger
    numbers, so float16 rounding costs them more accuracy than it costs plain patterns.
    """
    modules = resolve_layers(model, layers, key="method.layers")
    sizes: dict[str, tuple[int, int]] = {}

    def probe(name: str):
        def hook(_module: nn.Module, inputs: tuple, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            sizes[name] = (inputs[0][0].numel(), out[0].numel())

        return hook

    handles = [m.register_forward_hook(probe(n)) for n, m in modules.items()]
    try:
        model.eval()(example)
    finally:
        for h in handles:
            h.remove()
    factored = [n for n in layers if factor and factorable(modules[n], *sizes[n])]
    dtypes = dict.fromkeys(layers, dtype)
    for name in factored:
        width, plain = sizes[name][0] + 1, sizes[name][1]
        if dtype != torch.float64 and 2 * width * 4 <= plain * dtype.itemsize:
            dtypes[name] = torch.float32
    return factored, dtypes


def predict_logits(
    model: nn.Module, batches: Iterable, device: torch.device | str = "cpu", progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, K) and labels (N,) of every batch (x, y), on the CPU, in loader order (`extract`
    without layers); the model's training mode is restored afterwards."""
    was_training = model.training
    out = extract(model, batches, [], device=device, progress=progress, desc="predict")
    model.train(was_training)
    return out["logits"], out["labels"]


def score(
    model: nn.Module, batches: Iterable, device: torch.device | str = "cpu", progress: bool = False
) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """Accuracy, mean cross-entropy and count over all batches, plus the logits and labels.

    Computed in one process over the whole split, so single- and multi-process runs report the
    same numbers.
    """
    logits, labels = predict_logits(model, batches, device, progress=progress)
    metrics = {
        "acc": float((logits.argmax(1) == labels).float().mean()),
        "loss": float(torch.nn.functional.cross_entropy(logits, labels)),
        "n": len(labels),
    }
    return metrics, logits, labels
