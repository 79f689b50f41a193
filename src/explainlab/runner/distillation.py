"""The Lightning module that trains a distillation student (paper 002, Fig. 9): the classifier module
with `methods.knowledge_points.FeatureDistillationLoss` as its training loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from explainlab.errors import ConfigValueError
from explainlab.methods.knowledge_points import FeatureDistillationLoss, MimickedFeature
from explainlab.models.compute import set_memory_format
from explainlab.models.layers import ActivationRecorder, resolve_layers
from explainlab.runner.classifier import ClassifierModule


class DistillModule(ClassifierModule):
    """ClassifierModule whose training loss is `methods.knowledge_points.FeatureDistillationLoss` of
    one teacher layer (its output after ReLU, or its global average with `pool`), plus cross-entropy
    and logit distillation when weighted. detach_downstream: those logit losses train only the layers
    after the mimicked feature (`MimickedFeature`), so the layers up to it learn from the regression
    alone. The teacher is frozen and kept in eval mode; the student's layer must give its shape.
    """

    #: The frozen teacher is in eval mode on purpose (read by the training service).
    keeps_eval_submodules = True

    def __init__(self, student: nn.Module, teacher: nn.Module, layer: str, optimizer: Callable[..., Any],
                 scheduler: Callable[..., Any] | None = None, *, mimic_weight: float = 1.0, ce_weight: float = 1.0,
                 kd_weight: float = 0.0, temperature: float = 4.0, pool: bool = False,
                 detach_downstream: bool = False, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(student, optimizer, scheduler, **kwargs)
        self.teacher = teacher.eval().requires_grad_(False)
        resolve_layers(student, [layer], key="method.layers")
        self.layer, self.detach_downstream = layer, detach_downstream
        self.distillation = FeatureDistillationLoss(mimic_weight=mimic_weight, ce_weight=ce_weight, kd_weight=kd_weight,
                                                    temperature=temperature, pool=pool)  # fmt: skip

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.channels_last:  # the teacher runs in the student's layout (given back in on_fit_end)
            set_memory_format(self.teacher, True)

    def on_fit_end(self) -> None:
        if self.channels_last:
            set_memory_format(self.teacher, False)
        super().on_fit_end()

    def train(self, mode: bool = True) -> DistillModule:
        super().train(mode)
        self.teacher.eval()  # batch-norm statistics of the teacher never move
        return self

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        with MimickedFeature(self.model, self.layer, detach_downstream=self.detach_downstream) as tap:
            logits = self(x)
        with torch.no_grad(), ActivationRecorder(self.teacher, [self.layer]) as teacher_rec:
            teacher_logits = self.teacher(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)
        student_f, teacher_f = tap.feature, teacher_rec.activations[self.layer]
        if student_f.shape != teacher_f.shape:
            raise ConfigValueError("method.layers", self.layer, f"a layer of equal shape in student and teacher "
                                   f"({tuple(student_f.shape)} vs {tuple(teacher_f.shape)})")  # fmt: skip
        terms = self.distillation(student_f, teacher_f, logits, y, teacher_logits)
        loss = terms["loss"]
        self.train_acc(logits, y)
        self.log("train/mimic", terms["mimic"], on_step=True, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=len(y))  # fmt: skip
        self.log("train/loss", loss, on_step=True, on_epoch=True, sync_dist=True, batch_size=len(y))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss
