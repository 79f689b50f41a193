"""`method=distill`: students move towards the teacher at the mimicked layer; the module's loss."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch

from explainlab.cli import run
from explainlab.data import SyntheticDataModule
from explainlab.errors import ConfigValueError
from explainlab.methods.knowledge_points.distillation import regional_differences
from explainlab.models.build import build_model
from explainlab.models.layers import record_activations
from explainlab.runner.distill import DistillModule, DistillStudy

STUDY = [
    "method=distill",
    "dataset=synthetic",
    "model.image_size=16",
    "recipe.epochs=3",
    "trainer.enable_progress_bar=false",
    "method.images=64",
    "method.layers=[conv2]",
    "method.pooled_layers=[]",
    "method.knowledge_points=null",
    "method.ce_weight=1.0",
    "method.detach_downstream=false",
]


def test_student_gets_closer_to_the_teacher_at_the_mimicked_layer(compose, caplog, capsys) -> None:
    cfg = compose(STUDY)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, logger="explainlab.runner"):
        warnings.simplefilter("always")
        metrics = run(cfg)
    # The log says which student trains before its epoch lines.
    assert "student 1/1: conv2, mimicking the teacher's conv2 after ReLU" in caplog.text
    assert re.search(r"trained in .*: test accuracy [01]\.\d{4}, test loss", caplog.text)
    # The summary shows the student's accuracy like the teacher's (three decimals), not a raw float.
    assert re.search(r"student conv2 test accuracy: [01]\.\d{3}(\s|$)", capsys.readouterr().out)
    # The teacher is in eval mode on purpose: Lightning's notice about it does not reach the user.
    assert not [str(w.message) for w in caught if "in eval mode" in str(w.message)]
    out = Path(cfg.paths.output_dir)
    similarity = pd.read_csv(out / "results" / "distill_similarity.csv")
    at = similarity[similarity["layer"] == "conv2"].set_index("stage")
    assert at.loc["trained", "orientation_diff"] < 0.5 * at.loc["initial", "orientation_diff"]
    students = pd.read_csv(out / "results" / "students.csv").set_index("student")
    assert list(students.index) == ["teacher", "conv2"] and students.loc["conv2", "test_acc"] > 0.5
    assert students.loc["conv2", "mimicked_layer"] == "conv2 after ReLU" and students.loc["conv2", "epochs"] == 3
    assert (out / "figures" / "distill_similarity.png").is_file()
    assert metrics["orientation_diff/conv2/conv2"] == pytest.approx(at.loc["trained", "orientation_diff"])
    # The student is cached like a trained model: a rerun reuses it and gives the same table.
    again = compose(STUDY, output_dir=out.parent / "again")
    run(again)
    students_again = pd.read_csv(out.parent / "again" / "results" / "students.csv")
    assert bool(students_again.loc[1, "cached"])
    pd.testing.assert_frame_equal(similarity, pd.read_csv(out.parent / "again" / "results" / "distill_similarity.csv"))


def test_distill_module_keeps_the_teacher_frozen_and_adds_the_mimic_loss() -> None:
    torch.manual_seed(0)
    teacher, student = build_model("small_cnn", image_size=8), build_model("small_cnn", image_size=8)
    module = DistillModule(student, teacher, "conv2", lambda p: torch.optim.SGD(p, lr=0.1), ce_weight=0.0)
    module.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    module.log = lambda *a, **k: None  # outside a Trainer
    loss = module.training_step((x, y), 0)
    with torch.no_grad():
        s_feat = record_activations(student, x, ["conv2"])["conv2"]
        t_feat = record_activations(teacher, x, ["conv2"])["conv2"]
    assert loss.item() == pytest.approx(torch.nn.functional.mse_loss(s_feat.relu(), t_feat.relu()).item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def _distil_one_epoch(channels_last: bool | str) -> tuple[DistillModule, list[bool]]:
    """One CPU epoch of a small student mimicking a teacher's conv2; the teacher's input layout per step."""
    pl.seed_everything(0)
    net = dict(num_classes=4, in_channels=3, image_size=12, mean=(0.5,) * 3, std=(0.3,) * 3)
    teacher, student = build_model("small_cnn", **net), build_model("small_cnn", **net)
    module = DistillModule(student, teacher, "conv2", lambda p: torch.optim.SGD(p, lr=0.1), num_classes=4,
                           channels_last=channels_last)  # fmt: skip
    seen: list[bool] = []
    conv = next(m for m in teacher.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_pre_hook(lambda m, i: seen.append(i[0].is_contiguous(memory_format=torch.channels_last)))
    data = SyntheticDataModule(n_train=64, n_test=8, num_classes=4, in_channels=3, image_size=12, batch_size=32,
                               val_size=0)  # fmt: skip
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, datamodule=data)
    return module, seen


def test_channels_last_distillation_runs_the_teacher_alike_and_gives_it_back() -> None:
    plain, seen_plain = _distil_one_epoch(False)
    fast, seen_fast = _distil_one_epoch(True)
    assert seen_plain and not any(seen_plain) and all(seen_fast)
    for t in fast.teacher.state_dict().values():  # the teacher is handed back in the default layout
        if t.dim() == 4:
            assert t.is_contiguous()
    for (name, a), b in zip(plain.model.state_dict().items(), fast.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-4), name  # float rounding of other conv kernels only


def test_regional_differences_of_identical_and_scaled_maps() -> None:
    maps = torch.rand(3, 4, 5, 5)
    same = regional_differences(maps, maps)
    assert same["orientation_diff"] == pytest.approx(0.0, abs=1e-6) and same["strength_diff"] == pytest.approx(0.0)
    doubled = regional_differences(2 * maps, maps)
    assert doubled["orientation_diff"] == pytest.approx(0.0, abs=1e-6) and doubled["strength_diff"] == pytest.approx(
        1.0
    )


def test_bad_layer_names_the_key(compose) -> None:
    with pytest.raises(ConfigValueError, match="method.layers"):
        run(compose([*STUDY, "method.layers=[conv9]"]))


def test_students_train_with_two_ddp_processes(compose) -> None:
    """`trainer=ddp_spawn` (2 CPU processes) trains the student through the same runner; with half the
    steps per process it moves less far than a single process, but towards the teacher."""
    cfg = compose([*STUDY, "trainer=ddp_spawn"])
    run(cfg)
    out = Path(cfg.paths.output_dir)
    similarity = pd.read_csv(out / "results" / "distill_similarity.csv")
    at = similarity[similarity["layer"] == "conv2"].set_index("stage")
    assert at.loc["trained", "orientation_diff"] < 0.8 * at.loc["initial", "orientation_diff"]
    assert pd.read_csv(out / "results" / "students.csv").loc[1, "test_acc"] > 0.5


def test_paper_setup_writes_differences_claims_and_flags_weak_students(compose) -> None:
    """Feature regression (CE on the head only), a conv-map and a pooled-feature student, the
    knowledge points of all three, the regional differences in the teacher's frame and the claims."""
    cfg = compose([
        *STUDY[:-3], "recipe.epochs=1", "method.pooled_layers=[conv2]", "method.min_test_acc=0.99", "method.images=32",
        "method.knowledge_points.regional_epochs=2", "method.knowledge_points.importance_steps=3",
        "method.knowledge_points.sample_rounds=3", "method.knowledge_points.batch_size=16",
    ])  # fmt: skip
    run(cfg)
    out = Path(cfg.paths.output_dir)
    students = pd.read_csv(out / "results" / "students.csv")
    assert list(students["student"]) == ["teacher", "conv2", "conv2_pooled"]
    assert {"student", "mimicked_layer", "epochs", "test_acc"} <= set(students.columns)
    assert (students["reached"] == (students["test_acc"] >= 0.99)).iloc[1:].all()  # flagged, analysed either way
    points = pd.read_csv(out / "results" / "knowledge_points.csv")
    assert sorted(points["student"].unique()) == ["conv2", "conv2_pooled", "teacher"] and len(points) == 6
    differences = pd.read_csv(out / "results" / "distill_differences.csv")
    assert set(differences["student"]) == {"conv2", "conv2_pooled"} and (differences["layer"] == "conv2").all()
    assert differences["one_minus_cos"].between(-1e-6, 2 + 1e-6).all()
    claims = pd.read_csv(out / "results" / "distill_claims.csv")
    assert list(claims.columns) == ["claim", "measured", "supported"] and len(claims) == 4
    assert claims["supported"].isin([True, False]).all()
    for name in ("distill_histograms", "distill_knowledge_points"):
        assert (out / "figures" / f"{name}.png").is_file()


def test_bad_knowledge_point_option_names_its_key(compose) -> None:
    with pytest.raises(ConfigValueError, match="method.knowledge_points.kappa_tilde"):
        run(compose([*STUDY[:-3], "method.knowledge_points.kappa_tilde=-1"]))
    with pytest.raises(ConfigValueError, match="method.knowledge_points.nonsense"):
        DistillStudy(knowledge_points={"nonsense": 1})


@pytest.mark.slow
@pytest.mark.shared_data
def test_cifar_distillation_preset_runs_on_a_tiny_limit(compose, shared_data: Path, shared_models: Path) -> None:
    """`experiment=distill_cifar`: pretrained ResNet44 teacher, ResNet20 students of layer3 and of its
    global average, trained on a few batches (flagged as under-trained), cached: a rerun only analyses."""
    overrides = [
        "experiment=distill_cifar", f"dataset.root={shared_data}", "dataset.verify=false", "dataset.download=false",
        "dataset.limit_train=256", "dataset.limit_test=64", "recipe.epochs=1", "trainer.enable_progress_bar=false",
        "method.images=32", "method.knowledge_points.sample_rounds=3", "method.knowledge_points.regional_epochs=2",
        "method.knowledge_points.importance_steps=3", "method.knowledge_points.batch_size=16",
    ]  # fmt: skip
    cfg = compose(overrides)
    run(cfg)
    out = Path(cfg.paths.output_dir)
    students = pd.read_csv(out / "results" / "students.csv").set_index("student")
    assert list(students.index) == ["teacher", "layer3", "layer3_pooled"]
    assert students.loc["teacher", "test_acc"] > 0.8 and not students["reached"].iloc[1:].any()
    assert students.loc["layer3_pooled", "mimicked_layer"].startswith("global average of layer3")
    claims = pd.read_csv(out / "results" / "distill_claims.csv")
    assert len(claims) == 4 and claims["supported"].isin([True, False]).all()
    assert set(pd.read_csv(out / "results" / "distill_differences.csv")["layer"]) == {"layer3"}
    again = compose(overrides, output_dir=out.parent / "again")
    run(again)
    assert pd.read_csv(out.parent / "again" / "results" / "students.csv")["cached"].all()


def test_cifar_distillation_preset_is_the_papers_setup(compose) -> None:
    cfg = compose(["experiment=distill_cifar"])
    assert cfg.model.name == "resnet44" and cfg.model.pretrained == "akamaster"
    assert cfg.method.student == "resnet20" and list(cfg.method.layers) == ["layer3"]
    assert list(cfg.method.pooled_layers) == ["layer3"] and cfg.method.detach_downstream
    assert cfg.method.min_test_acc == 0.8 and cfg.recipe.epochs == 15
    assert list(cfg.recipe.scheduler.milestones) == [8, 12]
    study = DistillStudy(**{k: v for k, v in cfg.method.items() if k != "_target_"})
    assert [(s.name, s.pool) for s in study.students] == [("layer3", False), ("layer3_pooled", True)]
    assert study.kp is not None and study.kp.kappa_tilde == 1000.0 and study.kp.alpha == 1.0
