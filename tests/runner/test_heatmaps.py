"""`method=heatmaps` end to end: maps, SSIM tables, AOPC, randomisation check, clustering, errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import torch

from explainlab.cli import run
from explainlab.errors import ExplainlabError
from explainlab.methods.heatmaps.sanity import randomised_models
from explainlab.models.build import build_model
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
    # The study's randomised copies: `methods.heatmaps.sanity.randomised_models` (cascading, top first).
    copies = [(count, copy.deepcopy(clone)) for count, _, clone in randomised_models(model, seed=0)]
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
        ("method.images=[0,100000]", "method.images"),
        ("method.aopc_orders=[best]", "method.aopc_orders"),
    ],
)
def test_bad_study_config_names_the_key(compose, override: str, key: str) -> None:
    assert_run_refuses(compose, [*STUDY, override], key)


def test_chosen_images_lrp_and_least_relevant_first(compose) -> None:
    cfg = compose([*STUDY, "method.images=[5,2]", "method.methods=[gradient,lrp_epsilon,lrp]",
                   "method.aopc_orders=[morf,lerf,random]", "method.randomisation=false"])  # fmt: skip
    metrics = run(cfg)
    results = Path(cfg.paths.output_dir) / "results"
    predictions = pd.read_csv(results / "predictions.csv")
    assert predictions["image"].tolist() == [0, 1] and predictions["source"].tolist() == ["test[5]", "test[2]"]
    aopc = pd.read_csv(results / "aopc.csv")
    assert set(aopc["order"]) == {"morf", "lerf", "random"}
    assert set(aopc["method"]) == {"gradient", "lrp_epsilon", "lrp"}
    assert any(key.startswith("aopc_lerf/") for key in metrics)


def _offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, present: tuple[str, ...]) -> None:
    """An empty torch hub cache in which only `present` models' weight files exist (untrained
    weights under the published file names); every download fails as it does offline."""
    import urllib.error

    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    for name in present:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
        torch.save(torchvision.models.get_model(name).state_dict(), folder / url.rsplit("/", 1)[1])

    def offline(url: str, *args, **kwargs) -> None:
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)


PAPER = [
    "experiment=heatmaps_paper",
    "dataset=synthetic",
    "dataset.in_channels=3",
    "method.images=2",
    "method.image_size=64",
    "method.aopc_steps=3",
    "method.randomisation_layers=1",
    "trainer.enable_progress_bar=false",
]


def test_paper_preset_runs_what_it_has_and_says_what_it_skipped(compose, tmp_path, monkeypatch) -> None:
    _offline_hub(tmp_path, monkeypatch, present=("squeezenet1_1",))
    cfg = compose(PAPER)
    assert len(cfg.method.models) == 13 and cfg.method.image_size == 64
    metrics = run(cfg)
    results = Path(cfg.paths.output_dir) / "results"
    skipped = pd.read_csv(results / "skipped.csv")
    assert len(skipped) == 12 and "squeezenet1_1" not in set(skipped["model"])
    assert skipped["reason"].str.contains("download.pytorch.org/models/").all()
    assert skipped["reason"].str.contains(str(tmp_path / "torch" / "hub" / "checkpoints")).all()
    aopc = pd.read_csv(results / "aopc.csv")
    assert set(aopc["model"]) == {"squeezenet1_1"} and set(aopc["order"]) == {"morf", "lerf", "random"}
    assert metrics["models"] == 1


def test_paper_preset_without_any_weights_lists_every_file(compose, tmp_path, monkeypatch) -> None:
    _offline_hub(tmp_path, monkeypatch, present=())
    with pytest.raises(ExplainlabError, match="no model of method.models could be loaded") as info:
        run(compose(PAPER))
    for name in ("alexnet", "inception_v3", "vgg13", "densenet201", "squeezenet1_0"):
        assert f"  {name}: no torchvision weights" in str(info.value)
