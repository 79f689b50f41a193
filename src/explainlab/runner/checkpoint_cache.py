"""Trained weights cached by a hash of everything that determines them.

A cache entry is `<cache_dir>/checkpoints/<key>.pt`, a weights-only file holding the key's
canonical JSON, the model's state dict (with each tensor's shape, dtype and content hash) and its
test metrics. An entry is used only when the JSON stored inside equals the requested one and the
tensors match their stored descriptions, so a hash collision, a hand-copied or a damaged file
cannot substitute other weights: such an entry is moved aside (`<key>.pt.corrupt-<time>`) with a
warning naming it, and the model is trained again. Weights or test metrics that are not finite are
never cached. `lock(spec)` serialises "look up, else train and write" across processes
(results.cache.EntryStore). Clear the cache by deleting the folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from explainlab.errors import NonFiniteModelError
from explainlab.results.cache import EntryRejected, EntryStore, check_described, describe

# 2: entries carry tensor descriptions; the model is built from its own seeded generator
# (runner.context.RunContext.model), so training no longer depends on what was built before it.
CACHE_FORMAT = 2


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def cache_key(spec: dict[str, Any]) -> str:
    """Hex key of a training spec (model, data, recipe, seed, precision...)."""
    return hashlib.sha256(canonical_json({"format": CACHE_FORMAT, **spec}).encode()).hexdigest()[:20]


def describe_spec(spec: dict[str, Any]) -> str:
    """Short human-readable name of a training spec for error messages."""
    model, data = spec.get("model", {}), spec.get("dataset", {})
    name = model.get("name") if isinstance(model, dict) else None
    dataset = str(data.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(data, dict) else ""
    extra = {k: v for k, v in spec.items() if k not in ("model", "dataset", "recipe", "trainer", "seed")}
    return f"model {name} on {dataset or 'its data'}, seed {spec.get('seed')}" + (f", {extra}" if extra else "")


def non_finite(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or inf."""
    return [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def is_rank_zero_process() -> bool:
    """False in the worker processes a DDP launcher (Lightning's subprocess launcher, srun) starts
    for ranks > 0: they train together with rank 0 and must not wait for the lock rank 0 holds."""
    return all(int(os.environ.get(name) or 0) == 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


class CheckpointCache:
    def __init__(self, cache_dir: str | Path) -> None:
        self.folder = Path(cache_dir) / "checkpoints"
        self.store = EntryStore(self.folder, "checkpoint cache")

    def path(self, spec: dict[str, Any]) -> Path:
        return self.store.path(cache_key(spec))

    def partial_path(self, spec: dict[str, Any]) -> Path:
        """Where an unfinished training run keeps its last Lightning checkpoint, to resume from."""
        return self.store.path(cache_key(spec), ".last.ckpt")

    @contextmanager
    def lock(self, spec: dict[str, Any]) -> Iterator[None]:
        """Hold the inter-process lock of `spec`: a second job waits here, then finds the entry."""
        with self.store.lock(cache_key(spec)):
            yield

    def get(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        """{'state_dict', 'metrics', 'path'} of a finished entry for `spec`, or None when absent
        (or unusable: then moved aside with a warning)."""
        text = canonical_json(spec)

        def check(entry: Any) -> None:
            if not isinstance(entry, dict) or not isinstance(entry.get("state_dict"), dict):
                raise EntryRejected("not a checkpoint-cache entry")
            if entry.get("spec") != text:
                raise EntryRejected("written for another spec")
            tensors = entry.get("tensors")
            if tensors is not None:  # format 1 entries carry no descriptions
                if set(tensors) != set(entry["state_dict"]):
                    raise EntryRejected("its tensors differ from the ones described with it")
                for name, tensor in entry["state_dict"].items():
                    check_described(name, tensor, tensors[name])
            bad = non_finite(entry["state_dict"])
            if bad:
                raise EntryRejected(f"non-finite weights in {', '.join(bad[:4])}")

        entry = self.store.load(cache_key(spec), check)
        if entry is None:
            return None
        return {"state_dict": entry["state_dict"], "metrics": entry.get("metrics", {}), "path": self.path(spec)}

    def put(self, spec: dict[str, Any], state_dict: dict[str, torch.Tensor], metrics: dict[str, float]) -> Path:
        """Write the entry of `spec`; refuses (NonFiniteModelError) weights or metrics that are NaN/inf."""
        state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        bad = non_finite(state)
        values = {k: float(v) for k, v in metrics.items()}
        bad_metrics = [k for k, v in values.items() if not math.isfinite(v)]
        if bad or bad_metrics:
            what = (f"weights {', '.join(bad[:4])}" + (f" (+{len(bad) - 4} more)" if len(bad) > 4 else "")) if bad \
                else ", ".join(f"{k}={values[k]}" for k in bad_metrics)  # fmt: skip
            raise NonFiniteModelError(
                f"training {describe_spec(spec)} gave non-finite {what}; not cached. Check model.mean/model.std "
                f"(a zero std divides by zero), the learning rate and the data."
            )
        entry = {
            "spec": canonical_json(spec),
            "state_dict": state,
            "tensors": {k: describe(v) for k, v in state.items()},
            "metrics": values,
        }
        return self.store.save(cache_key(spec), entry)

    def check_partial(self, spec: dict[str, Any]) -> Path | None:
        """The resumable `.last.ckpt` of `spec` when it can be read weights-only; an unreadable one is
        moved aside (named in a warning) and None returned, so training starts from scratch."""
        path = self.partial_path(spec)
        if not path.is_file():
            return None

        def check(entry: Any) -> None:
            if not isinstance(entry, dict) or "state_dict" not in entry:
                raise EntryRejected("not a Lightning checkpoint")

        if self.store.load(cache_key(spec), check, suffix=".last.ckpt") is None:
            return None
        return path
