"""ClassifierModule: channels_last per device ('auto'), and per-step work kept to accumulation."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from explainlab.data import SyntheticDataModule
from explainlab.errors import ConfigValueError
from explainlab.models import build_model
from explainlab.runner import classifier
from explainlab.runner.classifier import ClassifierModule


def _fit(channels_last: object) -> tuple[ClassifierModule, list[bool]]:
    pl.seed_everything(0)
    data = SyntheticDataModule(n_train=64, n_test=8, num_classes=4, in_channels=3, image_size=12, batch_size=32,
                               val_size=0)  # fmt: skip
    model = build_model("small_cnn", num_classes=4, in_channels=3, image_size=12, mean=(0.5,) * 3, std=(0.3,) * 3)
    module = ClassifierModule(model, lambda p: torch.optim.SGD(p, lr=0.1), num_classes=4, channels_last=channels_last)
    seen: list[bool] = []
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_pre_hook(lambda m, i: seen.append(i[0].is_contiguous(memory_format=torch.channels_last)))
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, datamodule=data)
    return module, seen


def test_auto_follows_the_measured_cpu_choice_and_gives_the_model_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classifier, "TRAIN_CHANNELS_LAST_ON_CPU", False)
    _, seen = _fit("auto")
    assert seen and not any(seen)
    monkeypatch.setattr(classifier, "TRAIN_CHANNELS_LAST_ON_CPU", True)
    module, seen = _fit("auto")
    assert seen and all(seen)
    # after training the weights and the (1, C, 1, 1) normalisation buffers have default strides again
    for t in module.model.state_dict().values():
        if t.dim() == 4:
            assert t.stride() == t.contiguous(memory_format=torch.contiguous_format).clone().stride()
    assert not module.channels_last


def test_channels_last_training_changes_the_layout_not_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classifier, "TRAIN_CHANNELS_LAST_ON_CPU", True)
    a, _ = _fit(False)
    b, _ = _fit("auto")
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-4), name  # float rounding of other conv kernels only


def test_bad_channels_last_is_refused() -> None:
    model = build_model("small_cnn", num_classes=4, in_channels=1, image_size=12, mean=(0.5,), std=(0.3,))
    with pytest.raises(ConfigValueError, match="model.channels_last"):
        ClassifierModule(model, lambda p: torch.optim.SGD(p, lr=0.1), channels_last="on")
    with pytest.raises(ConfigValueError, match="model.channels_last"):
        build_model("small_cnn", image_size=12, mean=(0.5,), std=(0.3,), channels_last="yes")
