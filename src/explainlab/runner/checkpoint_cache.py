"""Trained weights cached by a hash of everything that determines them.

A cache entry is `<cache_dir>/checkpoints/<key>.pt`, a weights-only file holding the key's
canonical JSON, the model's state dict and its test metrics. An entry is used only when the JSON
stored inside equals the requested one, so a hash collision or a hand-copied file cannot
substitute other weights. Clear the cache by deleting the folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from explainlab.errors import CheckpointError
from explainlab.results.io import atomic_path

CACHE_FORMAT = 1


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def cache_key(spec: dict[str, Any]) -> str:
    """Hex key of a training spec (model, data, recipe, seed, precision...)."""
    return hashlib.sha256(canonical_json({"format": CACHE_FORMAT, **spec}).encode()).hexdigest()[:20]


class CheckpointCache:
    def __init__(self, cache_dir: str | Path) -> None:
        self.folder = Path(cache_dir) / "checkpoints"

    def path(self, spec: dict[str, Any]) -> Path:
        return self.folder / f"{cache_key(spec)}.pt"

    def partial_path(self, spec: dict[str, Any]) -> Path:
        """Where an unfinished training run keeps its last Lightning checkpoint, to resume from."""
        return self.folder / f"{cache_key(spec)}.last.ckpt"

    def get(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        """{'state_dict', 'metrics'} of a finished entry for `spec`, or None when absent."""
        path = self.path(spec)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise CheckpointError(f"cached checkpoint {path} is unreadable ({err}); delete it to retrain.") from err
        if not isinstance(entry, dict) or entry.get("spec") != canonical_json(spec):
            raise CheckpointError(f"cached checkpoint {path} was written for another spec; delete it to retrain.")
        return {"state_dict": entry["state_dict"], "metrics": entry.get("metrics", {}), "path": path}

    def put(self, spec: dict[str, Any], state_dict: dict[str, torch.Tensor], metrics: dict[str, float]) -> Path:
        path = self.path(spec)
        entry = {
            "spec": canonical_json(spec),
            "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
            "metrics": {k: float(v) for k, v in metrics.items()},
        }
        with atomic_path(path) as tmp:
            torch.save(entry, tmp)
        return path
