"""Reading checkpoints safely (weights only), fetching pretrained files, fingerprinting weights."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from explainlab.errors import CheckpointError

AKAMASTER_URL = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
AKAMASTER_FILES = {
    "resnet20": "resnet20-12fca82f.th",
    "resnet32": "resnet32-d509ac18.th",
    "resnet44": "resnet44-014dd654.th",
    "resnet56": "resnet56-4bfd9763.th",
    "resnet110": "resnet110-1d1ed7c2.th",
}


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, loaded with `weights_only=True` (no arbitrary unpickling).

    Accepts a bare state dict, or a dict holding one under `state_dict` (akamaster, ours,
    Lightning). A leading `module.` (DataParallel) or `model.net.` (our Lightning module) prefix is
    removed. Raises CheckpointError naming the file when it is unreadable or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable weights-only checkpoint: {err}") from err
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors (top-level type {type(obj).__name__}).")
    return {_strip_prefix(k): v for k, v in state.items()}


def _strip_prefix(key: str) -> str:
    for prefix in ("module.", "model.net.", "net."):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def load_weights(net: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a checkpoint into `net`, strictly; mismatched keys or shapes name the file and keys."""
    state = load_state_dict(path)
    own = net.state_dict()
    # Checkpoints saved before PyTorch 0.4.1 carry no BatchNorm step counters; they default to 0.
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(own.keys() & state.keys())
        if own[k].shape != state[k].shape
    ]
    if missing or unexpected or wrong_shape:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "") if keys else "none"

        raise CheckpointError(
            f"{path} does not fit {type(net).__name__}: missing keys: {show(missing)}; "
            f"unexpected keys: {show(unexpected)}; shape mismatches: {show(wrong_shape)}."
        )
    net.load_state_dict(state, strict=False)
    return net


def pretrained_path(name: str, source: str, *, cache_dir: str | os.PathLike, search_dir: str | None = None) -> Path:
    """Local path of a published checkpoint: `search_dir` (or $EXPLAINLAB_MODELS), then the
    download cache, else download it by URL into the cache (needs network)."""
    if source != "akamaster":
        raise CheckpointError(f"model.pretrained={source!r} is unknown: expected akamaster or null.")
    if name not in AKAMASTER_FILES:
        raise CheckpointError(
            f"model.pretrained=akamaster has no checkpoint for {name}: available for {', '.join(AKAMASTER_FILES)}."
        )
    filename = AKAMASTER_FILES[name]
    search = [d for d in (search_dir, os.environ.get("EXPLAINLAB_MODELS")) if d]
    for folder in search:
        if (Path(folder) / filename).is_file():
            return check_hash_prefix(Path(folder) / filename)
    cached = Path(cache_dir) / "pretrained" / filename
    if cached.is_file():
        return check_hash_prefix(cached)
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        # hash_prefix: torch.hub checks the sha256 the file name promises before moving it in place.
        torch.hub.download_url_to_file(
            AKAMASTER_URL + filename, str(cached), hash_prefix=hash_prefix(filename), progress=True
        )
    except Exception as err:
        raise CheckpointError(
            f"could not download {AKAMASTER_URL + filename} ({err}). Offline, put {filename} in the folder "
            f"named by $EXPLAINLAB_MODELS or in {cached.parent}."
        ) from err
    return cached


_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")


def hash_prefix(filename: str) -> str | None:
    """The sha256 prefix a published file's name carries (torch.hub's `name-<sha256 prefix>.ext`)."""
    match = _HASH_IN_NAME.search(filename)
    return match.group(1) if match else None


def check_hash_prefix(path: Path) -> Path:
    """`path`, after checking that its sha256 starts with the prefix its name carries (if any)."""
    prefix = hash_prefix(path.name)
    if prefix is None:
        return path
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(prefix):
        raise CheckpointError(
            f"{path} is damaged or not the published file: its sha256 starts with {digest.hexdigest()[:len(prefix)]}, "
            f"its name promises {prefix}. Delete it (a download is fetched again) or copy the original."
        )
    return path


def fingerprint(model: nn.Module, length: int = 16) -> str:
    """Hex digest of every parameter and buffer (names, shapes, values): identifies trained weights."""
    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:length]
