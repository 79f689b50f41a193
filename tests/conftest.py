"""Shared fixtures and markers: `gpu` skips without CUDA, `shared_data` without ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EXPLAINLAB_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
SHARED_MODELS = SHARED / "models" / "cifar10"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_gpu = pytest.mark.skip(reason="needs CUDA")
    no_shared = pytest.mark.skip(reason=f"needs {SHARED_DATA} and {SHARED_MODELS}")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)
        if "shared_data" in item.keywords and not (SHARED_DATA.is_dir() and SHARED_MODELS.is_dir()):
            item.add_marker(no_shared)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own cache and no stray data/model roots; wandb stays offline."""
    monkeypatch.setenv("EXPLAINLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("EXPLAINLAB_DATA", raising=False)
    monkeypatch.delenv("EXPLAINLAB_MODELS", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture
def shared_models(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EXPLAINLAB_MODELS", str(SHARED_MODELS))
    return SHARED_MODELS


@pytest.fixture
def compose(tmp_path: Path):
    """compose(overrides) -> resolved config writing into a fresh tmp run directory."""
    from explainlab.config import compose_config

    def _compose(overrides: list[str] = (), output_dir: Path | None = None):
        return compose_config(list(overrides), output_dir=output_dir or tmp_path / "run")

    return _compose
