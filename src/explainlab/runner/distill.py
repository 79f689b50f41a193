"""`method=distill`: knowledge distillation studies (paper 002, Fig. 9).

A teacher (the run's model: pretrained, a checkpoint, or trained by the recipe) and one student per
entry of `layers`, each trained by the Lightning runner to mimic that teacher layer (MSE between the
ReLU'd outputs of the same layer in student and teacher), optionally with cross-entropy and the
classic logit-distillation loss. Students are cached like trained models and resume when
interrupted; DDP works as for `method=train`.

Tables (results/): students.csv (student, test accuracy, seconds, cached), distill_similarity.csv
(student, stage (initial|trained), layer, orientation_diff = mean 1 − cos, strength_diff = mean
|‖f_s‖ − ‖f_t‖| / mean ‖f_t‖ over regions), knowledge_points.csv (teacher and students, per layer).
Figures: distill_similarity, distill_knowledge_points.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from explainlab.errors import ConfigValueError, check_float
from explainlab.methods.knowledge_points import FeatureDistillationLoss
from explainlab.methods.knowledge_points.defaults import default_layers
from explainlab.methods.knowledge_points.distillation import regional_differences
from explainlab.models.layers import ActivationRecorder, resolve_layers
from explainlab.models.loading import fingerprint
from explainlab.results import kp_figures
from explainlab.runner.activations import eval_device, extract, first_batches
from explainlab.runner.classifier import ClassifierModule
from explainlab.runner.context import RunContext
from explainlab.runner.training import (
    TrainingResult,
    build_module,
    ensure_trained,
    log_to_dashboards,
    train_unless_given,
)


class DistillModule(ClassifierModule):
    """ClassifierModule whose training loss is `methods.knowledge_points.FeatureDistillationLoss` of
    one teacher layer (feature mimicking of the ReLU'd outputs, cross-entropy, logit distillation).

    The teacher is frozen and kept in eval mode; the student's layer must give the teacher's shape.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, layer: str, optimizer: Callable[..., Any],
                 scheduler: Callable[..., Any] | None = None, *, mimic_weight: float = 1.0, ce_weight: float = 1.0,
                 kd_weight: float = 0.0, temperature: float = 4.0, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(student, optimizer, scheduler, **kwargs)
        self.teacher = teacher.eval().requires_grad_(False)
        resolve_layers(student, [layer], key="method.layers")
        self.layer = layer
        self.distillation = FeatureDistillationLoss(mimic_weight=mimic_weight, ce_weight=ce_weight,
                                                    kd_weight=kd_weight, temperature=temperature)  # fmt: skip

    def train(self, mode: bool = True) -> DistillModule:
        super().train(mode)
        self.teacher.eval()  # batch-norm statistics of the teacher never move
        return self

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        with ActivationRecorder(self.model, [self.layer], detach=False) as rec:
            logits = self(x)
        with torch.no_grad(), ActivationRecorder(self.teacher, [self.layer]) as teacher_rec:
            teacher_logits = self.teacher(x)
        student_f, teacher_f = rec.activations[self.layer], teacher_rec.activations[self.layer]
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


class DistillStudy:
    """One feature-mimicking student per teacher layer in `layers`; compare them with the teacher.

    compare_layers: conv layers whose regional features are compared (default: the knowledge-point
    layers of the model). knowledge_points: a `runner.knowledge_points.KnowledgePointStudy` (Hydra
    builds it from the YAML; its `images`, `split`, settings) run on the teacher and every student, or
    None to skip that part.
    """

    def __init__(self, layers: Sequence[str], *, compare_layers: Sequence[str] | None = None,
                 mimic_weight: float = 1.0, ce_weight: float = 1.0, kd_weight: float = 0.0, temperature: float = 4.0,
                 knowledge_points: Any = None, images: int = 200) -> None:  # fmt: skip
        if not layers:
            raise ConfigValueError("method.layers", list(layers), "at least one teacher layer to mimic")
        for key, value in (("mimic_weight", mimic_weight), ("ce_weight", ce_weight), ("kd_weight", kd_weight)):
            check_float(f"method.{key}", value, low=0.0, high=float("inf"))
        check_float("method.temperature", temperature, low=1e-6, high=float("inf"))
        self.layers, self.compare_layers = list(layers), list(compare_layers) if compare_layers else None
        self.weights = {"mimic_weight": mimic_weight, "ce_weight": ce_weight, "kd_weight": kd_weight,
                        "temperature": temperature}  # fmt: skip
        self.kp, self.images = knowledge_points, images

    def _student(self, ctx: RunContext, teacher: nn.Module, layer: str) -> tuple[nn.Module, nn.Module, TrainingResult]:
        cfg = ctx.cfg
        torch.manual_seed(cfg.seed)
        student = instantiate(cfg.model, pretrained=None, checkpoint=None)
        initial = copy.deepcopy(student)
        spec = {**ctx.training_spec(), "distill": {"teacher": fingerprint(teacher), "layer": layer, **self.weights}}

        def module() -> DistillModule:
            base = build_module(ctx)  # the recipe's optimiser, scheduler and augmentation
            return DistillModule(student, teacher, layer, base.optimizer_factory, base.scheduler_factory,
                                 num_classes=cfg.model.num_classes, crop_padding=base.crop_padding, hflip=base.hflip,
                                 **self.weights)  # fmt: skip

        result = ensure_trained(ctx, model=student, module=module, spec=spec)
        return student, initial, result

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        start = time.perf_counter()
        ctx = RunContext(cfg)
        resolve_layers(ctx.model, self.layers, key="method.layers")
        train_unless_given(ctx)
        teacher = ctx.model
        device = eval_device(cfg.trainer.get("accelerator"))
        if self.kp is not None:
            self.kp.resolve_layers(cfg)
            compare = self.compare_layers or self.kp.layers
            batches = self.kp.first_images(ctx)
        else:
            compare = self.compare_layers or default_layers(cfg.model.name)[0]
            batches = first_batches(ctx.datamodule.dataset("test"), self.images, ctx.datamodule.eval_batch_size)
        teacher_maps = extract(teacher, batches, compare, device=device, flatten=False)

        student_rows, similarity_rows, point_rows = [], [], []
        if self.kp is not None:
            found = self.kp.analyse(teacher, batches, name="teacher", seed=cfg.seed, device=device)
            point_rows += [{"student": "teacher", **r} for r in found.points]
        for layer in self.layers:
            student, initial, result = self._student(ctx, teacher, layer)
            if not result.rank_zero:
                continue
            student_rows.append({"student": layer, "test_acc": result.metrics.get("test/acc"),
                                 "seconds": result.seconds, "cached": result.cached})  # fmt: skip
            for stage, model in (("initial", initial), ("trained", student)):
                maps = extract(model, batches, compare, device=device, flatten=False)
                for name in compare:
                    similarity_rows.append({"student": layer, "stage": stage, "layer": name,
                                            **regional_differences(maps[name], teacher_maps[name])})  # fmt: skip
            if self.kp is not None:
                found = self.kp.analyse(student, batches, name=f"student:{layer}", seed=cfg.seed, device=device)
                point_rows += [{"student": layer, **r} for r in found.points]

        rec = ctx.recorder
        rec.save_config(cfg)
        students, similarity = pd.DataFrame(student_rows), pd.DataFrame(similarity_rows)
        rec.save_table("students", students)
        rec.save_table("distill_similarity", similarity)
        rec.save_figure("distill_similarity", kp_figures.distill_similarity(similarity))
        if point_rows:
            points = pd.DataFrame(point_rows)
            rec.save_table("knowledge_points", points)
            rec.save_figure("distill_knowledge_points", kp_figures.distill_points(points))
        metrics: dict[str, Any] = {"seconds": time.perf_counter() - start}
        for row in student_rows:
            metrics[f"student/{row['student']}/test_acc"] = row["test_acc"]
        trained = similarity[similarity["stage"] == "trained"] if len(similarity) else similarity
        for row in trained.itertuples():
            metrics[f"orientation_diff/{row.student}/{row.layer}"] = row.orientation_diff
        log_to_dashboards(ctx, {k: float(v) for k, v in metrics.items() if v is not None})
        rec.log_metrics(metrics)
        headline: dict[str, Any] = {"teacher": cfg.model.name, "students (mimicked layer)": ", ".join(self.layers)}
        headline |= {f"student {r['student']} test accuracy": r["test_acc"] for r in student_rows}
        for row in trained.itertuples():
            headline[f"1 − cos {row.student} → teacher at {row.layer}"] = row.orientation_diff
        headline["time"] = f"{metrics['seconds']:.1f} s"
        rec.summary(f"explainlab distill: {cfg.model.name}", headline)
        return metrics
