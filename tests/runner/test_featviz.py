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
