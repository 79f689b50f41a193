"""`method=heatmaps` end to end: maps, SSIM tables, AOPC, randomisation check, clustering, errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from explainlab.cli import run
from explainlab.models.build import build_model
from explainlab.runner.heatmaps import randomised_copies
from tests.helpers import assert_run_refuses

STUDY = [
    "method=heatmaps",
    "dataset=synthetic",
    "model.image_size=16",
    "recipe.epochs=2",
    "trainer.enable_progress_bar=false",
    "method.images=3",
    "method.aopc_steps=4",
    "method.randomisation_layers=2",
    "method.ig_steps=4",
]


def test_study_on_the_run_model(compose) -> None:
    cfg = compose(STUDY)
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    aopc = pd.read_csv(out / "results" / "aopc.csv")
    assert set(aopc["method"]) == set(cfg.method.methods) and set(aopc["order"]) == {"morf", "random"}
    assert (aopc["step"].max() == 4) and (aopc[aopc["step"] == 0]["score"] == 0).all()
    ssim = pd.read_csv(out / "results" / "ssim" / "gradient" / "0.csv")
    assert list(ssim.columns) == ["model_a", "model_b", "ssim"] and ssim["ssim"].tolist() == [1.0]
    randomised = pd.read_csv(out / "results" / "randomisation.csv")
    assert sorted(randomised["layers_randomised"].unique()) == [1, 2] and randomised["ssim"].between(-1, 1).all()
    for name in ("heatmaps_0", "aopc", "randomisation"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 5000
    assert metrics["models"] == 1


@pytest.mark.shared_data
def test_published_cifar_resnets_are_compared_and_clustered(compose, shared_models, shared_data) -> None:
    overrides = [
        "experiment=heatmaps_cifar",
        f"dataset.root={shared_data}",
        "dataset.verify=false",
        "dataset.download=false",
        "method.images=2",
        "method.methods=[gradient,gradcam]",
        "method.aopc_steps=4",
        "method.randomisation=false",
        "trainer.enable_progress_bar=false",
    ]
    cfg = compose(overrides)
    run(cfg)
    out = Path(cfg.paths.output_dir)
    ssim = pd.read_csv(out / "results" / "ssim" / "gradcam" / "1.csv")
    assert len(ssim) == 16 and ssim["ssim"].between(-1, 1).all()
    clusters = pd.read_csv(out / "results" / "clusters.csv")
    assert set(clusters["linkage"]) == {"ward", "average_1-ssim"} and set(clusters["model"]) == {
        "resnet20", "resnet32", "resnet44", "resnet56"}  # fmt: skip
    assert (out / "figures" / "dendrogram_gradcam.png").is_file()


def test_randomised_copies_reset_layers_from_the_top() -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", image_size=8)
    copies = randomised_copies(model, seed=0)
    assert [count for count, _ in copies] == [1, 2, 3, 4]
    _, one = copies[0]
    assert not torch.equal(one.net.fc2.weight, model.net.fc2.weight)
    assert torch.equal(one.net.fc1.weight, model.net.fc1.weight)  # only the top layer changed


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("method.methods=[lime]", "method.methods"),
        ("method.models=[{name: resnet20, trained: imagenet}]", "method.models[0].trained"),
        ("method.target=-1", "method.target"),
    ],
)
def test_bad_study_config_names_the_key(compose, override: str, key: str) -> None:
    assert_run_refuses(compose, [*STUDY, override], key)
