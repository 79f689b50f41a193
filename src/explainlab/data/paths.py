"""Where data sets live on disk."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_data_root(root: str | os.PathLike | None) -> Path:
    """`root` if given, else $EXPLAINLAB_DATA, else ./data (relative to the working directory)."""
    if root in (None, ""):
        root = os.environ.get("EXPLAINLAB_DATA") or "data"
    return Path(root).expanduser().resolve()
