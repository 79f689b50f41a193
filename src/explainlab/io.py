"""Atomic writes: a file either holds its complete new content or its old one, never half.

Used by `methods/` (saved libraries), `runner/` (caches) and `results/` (tables, figures); it imports
nothing of explainlab, so every layer may use it. Files get the permissions the user's umask gives a
new file (as `open` would), not mkstemp's 0600. A write killed before its rename leaves
`.<name>.<random>.tmp` beside the target; `remove_orphans` deletes those of dead writers on the next start.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


log = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"


def current_umask() -> int:
    """The process's umask: from /proc (thread-safe) where there is one, else set and set back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_orphans(folder: str | os.PathLike, *, min_age_s: float = 60.0, recursive: bool = True) -> list[Path]:
    """Delete `.*.tmp` files of atomic writes older than `min_age_s` under `folder`; returns them.

    A temp file lives only between mkstemp and the rename of one write, so one that is older than a
    minute belongs to a writer that was killed (SIGKILL, power loss). Younger ones may belong to a
    process writing right now and are left alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    now = time.time()
    for path in folder.rglob(f".*{TMP_SUFFIX}") if recursive else folder.glob(f".*{TMP_SUFFIX}"):
        try:
            if path.is_file() and now - path.stat().st_mtime >= min_age_s:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # another process removed it first
            continue
    if removed:
        log.warning("removed %d unfinished temporary file(s) of killed writes under %s", len(removed), folder)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`.

    The temp file lives in the same folder so the final `os.replace` is atomic on POSIX.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call `writer(tmp_path)` and move the result onto `path` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
