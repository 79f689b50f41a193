"""Atomic writes: a file either holds its complete new content or its old one, never half.

They live in `explainlab.io`, which `methods/` may use too; re-exported here for the results layer.
"""

from __future__ import annotations

from explainlab.io import (
    TMP_SUFFIX,
    _json_default,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    atomic_write_with,
    current_umask,
    remove_orphans,
)

__all__ = [
    "TMP_SUFFIX",
    "_json_default",
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_write_with",
    "current_umask",
    "remove_orphans",
]
