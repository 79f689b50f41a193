"""`method=featviz` end to end on digits: settings, diversity, examples, inversion, errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from explainlab.cli import run
from explainlab.methods.featviz import representation_loss
from explainlab.methods.featviz.visualize import visualize
from explainlab.models.build import build_model
from explainlab.models.layers import record_activations
from explainlab.runner.featviz import FeatvizStudy
from tests.helpers import assert_run_refuses

STUDY = [
    "method=featviz",
    "recipe.epochs=2",
    "trainer.enable_progress_bar=false",
    "method.steps=6",
    "method.targets=[{layer: conv2, channel: 1},{class: 3}]",
    "method.transforms={pad: 1, jitter: 1, scales: [1, 0.9], degrees: 5, jitter2: 1}",
    "method.inversion_layers=[conv1]",
    "method.diversity_batch=2",
    "method.examples=3",
    "method.example_pool=50",
]


def test_study_writes_the_table_and_panels(compose) -> None:
    cfg = compose(STUDY)
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    table = pd.read_csv(out / "results" / "featviz.csv")
    assert list(table.columns) == ["model", "layer", "unit", "setting", "objective", "steps", "seconds"]
    assert table["setting"].tolist() == ["unregularised", "regularised", "diversity", "unregularised",
                                         "regularised", "inversion"]  # fmt: skip
    assert (table["steps"] == 6).all() and metrics["visualizations"] == 6
    for name in ("featviz_conv2_1", "featviz_class_3", "inversion"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 3000


def test_bad_targets_name_the_key(compose) -> None:
    assert_run_refuses(compose, [*STUDY, "method.targets=[{layer: conv2}]"], "method.targets[0]")
    assert_run_refuses(compose, [*STUDY, "method.targets=[{layer: conv9, channel: 0}]"], "method.targets")


def test_inversion_of_the_first_layer_reconstructs_the_image() -> None:
    """Mahendran & Vedaldi: a shallow representation determines the image; the study's inversion
    setting (no transformation robustness) recovers it, the regularised setting's random shifts blur it."""
    torch.manual_seed(0)
    model = build_model("mnist_cnn").eval()
    image = torch.zeros(1, 1, 28, 28)
    image[..., 6:22, 10:18] = 1.0  # a bright bar
    refs = record_activations(model, image, ["conv1"])
    study = FeatvizStudy([{"class": 0}], transforms={"pad": 2, "jitter": 2, "scales": [1, 1.05], "degrees": 5})
    errors = {}
    for setting in ("inversion", "regularised"):
        result = visualize(model, representation_loss("conv1", refs["conv1"]), shape=(1, 1, 28, 28), steps=150,
                           lr=0.05, seed=0, **study._setting(setting, 1, 28))  # fmt: skip
        errors[setting] = float((result.images - image).abs().mean())
    assert errors["inversion"] < 0.04 and errors["regularised"] > 2 * errors["inversion"]


RGB = [
    "method=featviz",
    "dataset=synthetic",
    "dataset.in_channels=3",
    "model.mean=[0.5,0.5,0.5]",
    "model.std=[0.3,0.3,0.3]",
    "recipe.epochs=1",
    "trainer.enable_progress_bar=false",
    "method.steps=4",
    "method.transforms={pad: 1, jitter: 1, scales: [1], degrees: 0, jitter2: 0}",
    "method.diversity_batch=0",
    "method.examples=0",
    "method.example_pool=64",
]


def test_survey_options_on_an_rgb_model(compose) -> None:
    cfg = compose([*RGB, "method.targets=[{classes: [0, 1]},{class: 2}]", "method.class_objective=log_probability",
                   "method.color=dataset", "method.bilateral_every=2",
                   "method.interpolations=[{from: {layer: conv2, channel: 0}, to: {class: 1}}]",
                   "method.interpolation_frames=3", "method.inversion_layers=[conv1]",
                   "method.inversion_method=mahendran", "method.inversion_starts=2"])  # fmt: skip
    run(cfg)
    out = Path(cfg.paths.output_dir)
    table = pd.read_csv(out / "results" / "featviz.csv")
    assert table["unit"].tolist()[:4] == ["classes:0,1", "classes:0,1", "class:2", "class:2"]
    assert table["setting"].tolist()[4:] == ["interpolation", "inversion"]
    assert (table.loc[table["unit"] == "class:2", "objective"] <= 0).all()  # a log-probability
    for name in ("featviz_classes_0_1", "featviz_conv2_0_to_class_1", "inversion"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 3000


def test_bad_survey_options_name_the_key(compose) -> None:
    for override, key in [
        ("method.color=lab", "method.color"),
        ("method.class_objective=softmax", "method.class_objective"),
        ("method.inversion_method=dream", "method.inversion_method"),
        ("method.inversion_starts=0", "method.inversion_starts"),
        ("method.interpolations=[{from: {class: 0}}]", "method.interpolations[0]"),
        ("method.interpolations=[{from: {class: 0}, to: {layer: x}}]", "method.interpolations[0].to"),
        ("method.targets=[{classes: []}]", "method.targets[0]"),
        ("method.bilateral_every=-1", "method.bilateral_every"),
        ("method.interpolation_frames=1", "method.interpolation_frames"),
    ]:
        assert_run_refuses(compose, [*RGB, override], key)
