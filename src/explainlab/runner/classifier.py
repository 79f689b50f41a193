"""LightningModule that trains and evaluates any image classifier of the `model` group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from explainlab.data.augment import random_crop_flip
from explainlab.models.compute import resolve_channels_last, set_memory_format
from explainlab.runner.distributed import release_process_group_at_exit


# Channels-last training on the CPU under model.channels_last=auto: measured on the idle 2-core CPU
# (benchmarks/channels_last_speed.py, docs/benchmarks.md, 2026-12-07: training steps 1.07-1.14x).
TRAIN_CHANNELS_LAST_ON_CPU = True


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of `model` (inputs in [0, 1] pixel space).

    optimizer: callable params -> torch.optim.Optimizer (a Hydra `_partial_`).
    scheduler: callable optimizer -> LR scheduler, stepped once per epoch, or None.
    crop_padding / hflip: batched augmentation applied to training batches on the device.
    channels_last: run the model in channels-last memory format: true, false, or 'auto' (decided
        when training starts, for the device it runs on: on for conv nets on CUDA, and on the CPU
        when `TRAIN_CHANNELS_LAST_ON_CPU`, the measured choice of docs/benchmarks.md; the model is
        given back in its own format when training ends).

    Per step it only accumulates: the accuracy is updated (not computed) and computed once per epoch.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        *,
        num_classes: int = 10,
        crop_padding: int = 0,
        hflip: bool = False,
        channels_last: bool | str = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.crop_padding, self.hflip = crop_padding, hflip
        resolve_channels_last(channels_last, "cpu", model, key="model.channels_last", auto_on_cpu=False)  # refuse early
        self.channels_last_setting = channels_last
        self.channels_last = channels_last is True
        self._auto_converted = False
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        metric = dict(task="multiclass", num_classes=num_classes)
        self.train_acc = torchmetrics.Accuracy(**metric)
        self.val_acc = torchmetrics.Accuracy(**metric)
        self.test_acc = torchmetrics.Accuracy(**metric)

    def setup(self, stage: str) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            release_process_group_at_exit()
        if self.channels_last_setting == "auto" and stage == "fit" and self._trainer is not None:
            device = self.trainer.strategy.root_device
            if resolve_channels_last(
                "auto", device, self.model, key="model.channels_last", auto_on_cpu=TRAIN_CHANNELS_LAST_ON_CPU
            ) and not self.channels_last:
                set_memory_format(self.model, True)
                self.channels_last = self._auto_converted = True

    def on_fit_end(self) -> None:
        if self._auto_converted:  # later studies get the model in the format it came in
            set_memory_format(self.model, False)
            self.channels_last = self._auto_converted = False

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Dropout and augmentation draw from the global generators: a resumed run must go on with
        # their streams where the interrupted one stopped, not from the seed (tensors only, so the
        # checkpoint still loads with weights_only=True).
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        checkpoint["rng_states"] = {"cpu": torch.get_rng_state(), "cuda": cuda}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states:
            torch.set_rng_state(states["cpu"])
            if states["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        if self.trainer is not None and self.trainer.training and (self.crop_padding or self.hflip):
            x = random_crop_flip(x, self.crop_padding, self.hflip)
        return x, y

    def _step(self, batch: Any, stage: str, accuracy: torchmetrics.Metric) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        accuracy.update(logits, y)  # forward() would also compute a per-batch accuracy nobody reads
        on_step = stage == "train"
        self.log(
            f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(y)
        )
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test", self.test_acc)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self(batch[0])

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.model.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"},
        }
