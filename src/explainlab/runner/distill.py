"""`method=distill`: knowledge distillation as paper 002 studies it (Sec. 4, Fig. 9).

A teacher (the run's model: pretrained, a checkpoint, or trained by the recipe) and one student per
mimicked feature: each entry of `layers` (the layer's output after ReLU) and of `pooled_layers` (its
global average, e.g. a CIFAR ResNet's penultimate feature). Students are of the teacher's
architecture or `student` (e.g. ResNet20 for a ResNet44 teacher: same stages and widths), trained by
the Lightning runner with `FeatureDistillationLoss` (feature regression; by default cross-entropy
reaches only the layers after the mimicked feature, `detach_downstream`), cached like trained models
and resumed when interrupted, so a rerun only analyses. A student below `min_test_acc` is analysed
but flagged loudly.

Tables (results/): students.csv (student, mimicked_layer, epochs, test_acc, reached, seconds, cached;
the teacher's row first), distill_similarity.csv (per student, initial/trained, per compared layer:
mean 1 − cos and relative strength difference of the ReLU'd regional features), and with
knowledge_points: knowledge_points.csv (teacher and students, every layer), distill_differences.csv
(per region of the top layer: 1 − cos and ‖h_s‖ − ‖h_t‖ of the features projected by the teacher's
Λ and strength scale), distill_claims.csv (claim, measured, supported). Figures: distill_similarity,
distill_knowledge_points, distill_histograms.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from explainlab.errors import ConfigValueError, check_float, check_int
from explainlab.methods.knowledge_points import differences_table, distillation_claims
from explainlab.methods.knowledge_points.analysis import KnowledgePointAnalysis
from explainlab.methods.knowledge_points.defaults import default_layers
from explainlab.methods.knowledge_points.distillation import regional_differences
from explainlab.models.layers import record_activations, resolve_layers
from explainlab.models.loading import fingerprint
from explainlab.results import kp_figures
from explainlab.runner.activations import eval_device, extract, first_batches, score
from explainlab.runner.context import RunContext
from explainlab.runner.distillation import DistillModule
from explainlab.runner.knowledge_analysis import analyse_model
from explainlab.runner.training import (
    TrainingResult,
    build_module,
    ensure_trained,
    log_to_dashboards,
    train_unless_given,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Student:
    """One student: its name, the teacher layer it mimics and whether it mimics the global average."""

    name: str
    layer: str
    pool: bool

    @property
    def mimicked(self) -> str:
        return f"global average of {self.layer} (penultimate)" if self.pool else f"{self.layer} after ReLU"


class DistillStudy:
    """One feature-mimicking student per entry of `layers` and `pooled_layers`; compared with the teacher.

    student: model name of the students (null: the teacher's architecture); compare_layers: conv
    layers of distill_similarity (default: the knowledge-point layers); min_test_acc: the test
    accuracy a student must reach to be the paper's trained student (below it the study warns and
    marks it); knowledge_points: options of `methods.knowledge_points.KnowledgePointAnalysis` run on
    the teacher and every student (None skips them, the differences and the claims); images: first
    images of the test split analysed.
    """

    def __init__(self, layers: Sequence[str] = ("layer3",), *, pooled_layers: Sequence[str] = ("layer3",),
                 student: str | None = None, compare_layers: Sequence[str] | None = None, mimic_weight: float = 1.0,
                 ce_weight: float = 1.0, kd_weight: float = 0.0, temperature: float = 4.0,
                 detach_downstream: bool = True, min_test_acc: float = 0.8,
                 knowledge_points: Mapping[str, Any] | None = None, images: int = 200) -> None:  # fmt: skip
        if not layers and not pooled_layers:
            raise ConfigValueError("method.layers", list(layers), "at least one teacher layer to mimic "
                                   "(in method.layers or method.pooled_layers)")  # fmt: skip
        for key, value in (("mimic_weight", mimic_weight), ("ce_weight", ce_weight), ("kd_weight", kd_weight)):
            check_float(f"method.{key}", value, low=0.0, high=float("inf"))
        check_float("method.temperature", temperature, low=1e-6, high=float("inf"))
        check_float("method.min_test_acc", min_test_acc, low=0.0, high=1.0)
        check_int("method.images", images, minimum=4)
        self.students = [Student(layer, layer, False) for layer in layers]
        self.students += [Student(f"{layer}_pooled", layer, True) for layer in pooled_layers]
        self.student, self.compare_layers = student, list(compare_layers) if compare_layers else None
        self.weights = {"mimic_weight": mimic_weight, "ce_weight": ce_weight, "kd_weight": kd_weight,
                        "temperature": temperature, "detach_downstream": bool(detach_downstream)}  # fmt: skip
        self.min_test_acc, self.images = min_test_acc, images
        self.kp = _analysis(knowledge_points) if knowledge_points is not None else None

    def _student(
        self, ctx: RunContext, teacher: nn.Module, who: Student
    ) -> tuple[nn.Module, nn.Module, TrainingResult]:
        cfg = ctx.cfg
        torch.manual_seed(cfg.seed)
        overrides = {"name": self.student} if self.student else {}
        student = instantiate(cfg.model, pretrained=None, checkpoint=None, **overrides)
        resolve_layers(student, [who.layer], key="method.layers")
        probe, shapes = torch.rand(2, cfg.dataset.in_channels, cfg.dataset.image_size, cfg.dataset.image_size), []
        for m in (student, teacher):  # in eval mode (no batch-norm statistics move), then as it was: Lightning
            was = m.training  # keeps each submodule's mode, so a student left in eval mode would train in it
            with torch.no_grad():
                shapes.append(tuple(record_activations(m.eval(), probe, [who.layer])[who.layer].shape))
            m.train(was)
        if shapes[0] != shapes[1]:
            raise ConfigValueError("method.layers", who.layer, f"a layer of equal shape in student and teacher "
                                   f"({shapes[0]} vs {shapes[1]})")  # fmt: skip
        initial = copy.deepcopy(student)
        base_spec = ctx.training_spec()
        spec = {**base_spec, "model": {**base_spec["model"], **overrides, "pretrained": None, "checkpoint": None},
                "distill": {"teacher": fingerprint(teacher), "layer": who.layer, "pool": who.pool,
                            **self.weights}}  # fmt: skip

        def module() -> DistillModule:
            base = build_module(ctx)  # the recipe's optimiser, scheduler and augmentation
            return DistillModule(student, teacher, who.layer, base.optimizer_factory, base.scheduler_factory,
                                 num_classes=cfg.model.num_classes, crop_padding=base.crop_padding, hflip=base.hflip,
                                 channels_last=base.channels_last_setting, pool=who.pool, **self.weights)  # fmt: skip

        return student, initial, ensure_trained(ctx, model=student, module=module, spec=spec)

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        start = time.perf_counter()
        ctx = RunContext(cfg)
        resolve_layers(ctx.model, sorted({s.layer for s in self.students}), key="method.layers")
        train_unless_given(ctx)
        teacher, device = ctx.model, eval_device(cfg.trainer.get("accelerator"))
        kp = self.kp.resolved(self.student or cfg.model.name) if self.kp is not None else None
        compare = self.compare_layers or (kp.layers if kp is not None else default_layers(cfg.model.name)[0])
        batches = first_batches(ctx.datamodule.dataset("test"), self.images, ctx.datamodule.eval_batch_size)
        teacher_maps = extract(teacher, batches, compare, device=device, flatten=False)
        teacher_acc = score(teacher, ctx.datamodule.loader("test"), device)[0]["acc"]
        student_rows = [{"student": "teacher", "mimicked_layer": "", "epochs": 0, "test_acc": teacher_acc,
                         "reached": True, "seconds": 0.0, "cached": True}]  # fmt: skip
        similarity_rows, point_rows, h_students, found_teacher = [], [], {}, None
        if kp is not None:
            found_teacher = analyse_model(kp, teacher, batches, name="teacher", seed=cfg.seed, device=device)
            point_rows += [{"student": "teacher", **r} for r in found_teacher.points]
        for number, who in enumerate(self.students, 1):
            log.info("student %d/%d: %s, mimicking the teacher's %s", number, len(self.students), who.name,
                     who.mimicked)  # fmt: skip
            student, initial, result = self._student(ctx, teacher, who)
            if not result.rank_zero:
                continue
            acc = result.metrics.get("test/acc")
            reached = acc is not None and acc >= self.min_test_acc
            if not reached:
                log.warning("STUDENT %s REACHED ONLY %s TEST ACCURACY (< method.min_test_acc=%s): its analysis is "
                            "not that of a trained student; train longer (recipe.epochs)", who.name, _accuracy(acc),
                            self.min_test_acc)  # fmt: skip
            student_rows.append({"student": who.name, "mimicked_layer": who.mimicked, "epochs": cfg.recipe.epochs,
                                 "test_acc": acc, "reached": reached, "seconds": result.seconds,
                                 "cached": result.cached})  # fmt: skip
            for stage, model in (("initial", initial), ("trained", student)):
                maps = extract(model, batches, compare, device=device, flatten=False)
                for name in compare:
                    similarity_rows.append({"student": who.name, "stage": stage, "layer": name,
                                            **regional_differences(maps[name], teacher_maps[name])})  # fmt: skip
            if kp is not None and found_teacher is not None:
                found = analyse_model(kp, student, batches, name=who.name, seed=cfg.seed, device=device)
                point_rows += [{"student": who.name, **r} for r in found.points]
                top = kp.reference_layer
                # One frame for both (Fig. 9 right): the teacher's Λ and strength scale.
                h_students[who.name] = (found_teacher.regional[top].transform(found.outputs[top].to(device)).cpu()
                                        * found_teacher.scales[top])  # fmt: skip

        rec = ctx.recorder
        rec.save_config(cfg)
        students, similarity = pd.DataFrame(student_rows), pd.DataFrame(similarity_rows)
        rec.save_table("students", students)
        rec.save_table("distill_similarity", similarity)
        rec.save_figure("distill_similarity", kp_figures.distill_similarity(similarity))
        claims = None
        if point_rows:
            points = pd.DataFrame(point_rows)
            rec.save_table("knowledge_points", points)
            rec.save_figure("distill_knowledge_points", kp_figures.distill_points(points))
        if h_students and found_teacher is not None and kp is not None:
            top = kp.reference_layer
            h_teacher = found_teacher.projected[top] * found_teacher.scales[top]
            differences = differences_table(h_students, h_teacher, top)
            rec.save_table("distill_differences", differences)
            rec.save_figure("distill_histograms", kp_figures.distill_histograms(differences))
            near = next((s.name for s in self.students if not s.pool), None)
            far = next((s.name for s in self.students if s.pool), None)
            if near and far:
                claims = distillation_claims(points, differences, near=near, far=far, model_column="student",
                                             layers=kp.layers)  # fmt: skip
                rec.save_table("distill_claims", claims)
        metrics: dict[str, Any] = {"seconds": time.perf_counter() - start, "teacher/test_acc": teacher_acc}
        for row in student_rows[1:]:
            metrics[f"student/{row['student']}/test_acc"] = row["test_acc"]
        trained = similarity[similarity["stage"] == "trained"] if len(similarity) else similarity
        for row in trained.itertuples():
            metrics[f"orientation_diff/{row.student}/{row.layer}"] = row.orientation_diff
        log_to_dashboards(ctx, {k: float(v) for k, v in metrics.items() if v is not None})
        rec.log_metrics(metrics)
        headline: dict[str, Any] = {"teacher": f"{cfg.model.name} (test accuracy {teacher_acc:.3f})",
                                    "students": f"{self.student or cfg.model.name}: "
                                    + ", ".join(s.mimicked for s in self.students)}  # fmt: skip
        for row in student_rows[1:]:
            below = f"  BELOW method.min_test_acc={self.min_test_acc}: not a trained student"
            warning = "" if row["reached"] else below
            headline[f"student {row['student']} test accuracy"] = f"{_accuracy(row['test_acc'])}{warning}"
        for row in trained.itertuples():
            headline[f"1 − cos {row.student} → teacher at {row.layer}"] = row.orientation_diff
        if claims is not None:
            for row in claims.itertuples():
                verdict = "supported" if row.supported else "NOT supported"
                headline[f"claim: {row.claim}"] = f"{verdict} ({row.measured})"
        headline["time"] = f"{metrics['seconds']:.1f} s"
        rec.summary(f"explainlab distill: {cfg.model.name}", headline)
        return metrics


def _accuracy(acc: float | None) -> str:
    """A test accuracy as the summary shows it: three decimals, like the teacher's."""
    return "unknown" if acc is None else f"{acc:.3f}"


def _analysis(options: Mapping[str, Any]) -> KnowledgePointAnalysis:
    """The knowledge-point analysis of the distillation study, its keys checked under method.knowledge_points."""
    allowed = [f.name for f in dataclasses.fields(KnowledgePointAnalysis) if f.name != "key_prefix"]
    for key in options:
        if key not in allowed:
            raise ConfigValueError(f"method.knowledge_points.{key}", options[key], f"a key among {allowed}")
    return KnowledgePointAnalysis(**dict(options), key_prefix="method.knowledge_points.")
