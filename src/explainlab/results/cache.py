"""One store for cache entries on disk, safe for parallel jobs and for damaged files.

An entry is `<folder>/<key>.pt`, written atomically (results.io) and read weights-only. The store
adds what every cache of the project needs:

- `lock(key)`: an inter-process file lock (`filelock`, `<folder>/.<key>.lock`) held around
  "look up, else produce and write", so that a second job started on the same key waits and then
  reuses the first job's entry instead of computing it again and overwriting it;
- `load(key, check)`: an entry that cannot be read, or that `check` refuses (another key stored
  inside, wrong shape, dtype or content hash), is named in a warning, moved aside to
  `<key>.pt.corrupt-<time>` and reported as absent, so the work is redone instead of failing every
  later run;
- orphan `.*.tmp` files of killed writes are removed when the store is opened.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from explainlab.results.io import atomic_path, remove_orphans

log = logging.getLogger(__name__)

_CLEANED: set[Path] = set()


class EntryRejected(Exception):
    """Raised by a `check` callback: the entry's content does not fit its key."""


def content_hash(tensor: torch.Tensor, *, sample: int = 1 << 16) -> str:
    """Cheap hash of a tensor: shape, dtype and up to `sample` evenly spaced elements' bytes.

    Cost O(sample), not O(numel): enough to tell a truncated, zeroed or swapped entry from the
    original, not a proof against deliberate tampering (the key stored inside guards the spec).
    """
    flat = tensor.detach().reshape(-1)
    if flat.numel() > sample:
        # Integer positions (a float linspace rounds past the end for numel > 2**24).
        flat = flat[torch.arange(sample, dtype=torch.int64) * (flat.numel() - 1) // (sample - 1)]
    h = hashlib.sha256(f"{tuple(tensor.shape)}|{tensor.dtype}".encode())
    if flat.numel():
        h.update(flat.cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def describe(tensor: torch.Tensor) -> dict[str, Any]:
    """{'shape', 'dtype', 'hash'} stored beside a tensor and compared when it is read back."""
    return {"shape": list(tensor.shape), "dtype": str(tensor.dtype), "hash": content_hash(tensor)}


def check_described(name: str, tensor: Any, stored: Any) -> None:
    """Raise EntryRejected unless `tensor` matches its stored description (see `describe`)."""
    if not isinstance(tensor, torch.Tensor):
        raise EntryRejected(f"{name} is not a tensor")
    if not isinstance(stored, dict):
        raise EntryRejected(f"{name} has no stored shape/dtype/hash")
    if stored.get("shape") != list(tensor.shape) or stored.get("dtype") != str(tensor.dtype):
        raise EntryRejected(
            f"{name} is {list(tensor.shape)} {tensor.dtype}, stored as {stored.get('shape')} {stored.get('dtype')}"
        )
    if stored.get("hash") != content_hash(tensor):
        raise EntryRejected(f"{name}'s content hash differs from the one stored with it")


class EntryStore:
    """Cache entries `<folder>/<key><suffix>` with per-key locks and checked, weights-only reads.

    name: what the entries are, for messages ("checkpoint cache", "activation cache").
    lock_timeout_s: how long `lock` waits for another process (-1: forever).
    """

    def __init__(self, folder: str | os.PathLike, name: str, *, suffix: str = ".pt",
                 lock_timeout_s: float = -1) -> None:  # fmt: skip
        self.folder, self.name, self.suffix, self.lock_timeout_s = Path(folder), name, suffix, lock_timeout_s
        resolved = self.folder.resolve()
        if resolved not in _CLEANED:  # once per process and folder
            _CLEANED.add(resolved)
            remove_orphans(self.folder, recursive=False)

    def path(self, key: str, suffix: str | None = None) -> Path:
        return self.folder / f"{key}{self.suffix if suffix is None else suffix}"

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the inter-process lock of `key` (re-entrant within a process)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        # is_singleton: a second `lock(key)` in this process re-enters instead of deadlocking on flock.
        with FileLock(str(self.folder / f".{key}.lock"), timeout=self.lock_timeout_s, is_singleton=True):
            yield

    def move_aside(self, path: Path, reason: str) -> Path:
        """Rename a damaged entry to `<name>.corrupt-<time>` (kept for inspection) and warn, naming it."""
        target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return target
        message = f"{self.name} entry {path} is unusable ({reason}); moved it to {target.name} and redoing the work."
        log.warning("%s", message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        return target

    def load(self, key: str, check: Callable[[Any], None] | None = None, *, suffix: str | None = None,
             mmap: bool = False) -> Any | None:  # fmt: skip
        """The object stored under `key`, or None when absent or unusable (then moved aside).

        check: raises EntryRejected (or any exception) when the loaded object does not fit the key.
        """
        path = self.path(key, suffix)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as err:
            self.move_aside(path, f"unreadable: {type(err).__name__}: {str(err)[:200]}")
            return None
        if check is not None:
            try:
                check(entry)
            except Exception as err:
                del entry  # release a memory map before the rename
                self.move_aside(path, str(err)[:300])
                return None
        return entry

    def save(self, key: str, entry: Any, *, suffix: str | None = None) -> Path:
        """Write `entry` (tensors, dicts, lists, strings, numbers) under `key`, atomically."""
        path = self.path(key, suffix)
        with atomic_path(path) as tmp:
            torch.save(entry, tmp)
        return path
