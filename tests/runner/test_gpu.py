"""GPU paths: bf16 autocast, channels-last and on-device batches (skipped without CUDA)."""

from __future__ import annotations

import pytest

from explainlab.cli import run


@pytest.mark.gpu
def test_fast_gpu_training_smoke(compose) -> None:
    cfg = compose(
        [
            "dataset=synthetic",
            "dataset.in_channels=3",
            "dataset.image_size=32",
            "dataset.num_classes=10",
            "model=resnet20",
            "recipe=cifar_resnet",
            "recipe.epochs=2",
            "trainer=gpu_fast",
            "model.channels_last=true",
            "dataset.on_device=true",
            "trainer.enable_progress_bar=false",
        ]
    )
    result = run(cfg)
    assert result["test/acc"] > 0.5
