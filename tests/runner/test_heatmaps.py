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
    "method.hog_cell=4",
]


def test_study_on_the_run_model(compose, capfd: pytest.CaptureFixture[str]) -> None:
    cfg = compose(STUDY)
    metrics = run(cfg)
    assert "heat maps" in capfd.readouterr().err  # the study's progress bar (progress=true by default)
    out = Path(cfg.paths.output_dir)
    aopc = pd.read_csv(out / "results" / "aopc.csv")
    assert set(aopc["method"]) == set(cfg.method.methods) and set(aopc["order"]) == {"morf", "random"}
    assert (aopc["step"].max() == 4) and (aopc[aopc["step"] == 0]["score"] == 0).all()
    ssim = pd.read_csv(out / "results" / "ssim" / "gradient" / "0.csv")
    assert list(ssim.columns) == ["model_a", "model_b", "ssim"] and ssim["ssim"].tolist() == [1.0]
    randomised = pd.read_csv(out / "results" / "randomisation.csv")
    assert list(randomised.columns) == ["model", "order", "step", "layer", "method", "image", "measure", "value"]
    assert sorted(randomised["step"].unique()) == [0, 1, 2] and set(randomised["order"]) == {"cascading"}
    assert set(randomised["measure"]) == {"spearman", "spearman_abs", "ssim", "hog"}
    assert randomised["value"].between(-1 - 1e-9, 1 + 1e-9).all()
    assert (randomised[randomised["step"] == 0]["value"] > 1 - 1e-9).all()  # the trained maps against themselves
    sparsity = pd.read_csv(out / "results" / "sparsity.csv")
    assert len(sparsity) == 3 * len(cfg.method.methods) and sparsity["gini"].between(0, 1).all()
    for name in ("heatmaps_0", "aopc", "randomisation", "sparsity"):
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
    assert set(clusters["linkage"]) == {"ward_1-ssim", "average_1-ssim", "ward_maps"} and set(clusters["model"]) == {
        "resnet20", "resnet32", "resnet44", "resnet56"}  # fmt: skip
    assert set(clusters["image"].astype(str)) == {"0", "1", "mean"}
    statistics = pd.read_csv(out / "results" / "merge_statistics.csv")
    joins_last = statistics[(statistics["statistic"] == "joins_last") & (statistics["method"] == "gradcam")]
    assert (joins_last["images"] == 2).all() and len(joins_last) == 3 * 4  # per linkage and model
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
        ("method.linkages=[centroid]", "method.linkages"),
        ("method.dendrograms=all", "method.dendrograms"),
        ("method.ssim={sigma: 1.5, window: 7}", "method.ssim.window"),
        ("method.ssim={gaussian: false, window: 4}", "method.ssim.window"),
        ("method.ssim={sigma: 0}", "method.ssim.sigma"),
        ("method.ssim={gaussian: false, window: 21}", "method.ssim"),
        ("method.aopc_regions=circles", "method.aopc_regions"),
        ("method.aopc_fill=gray", "method.aopc_fill"),
        ("method.randomisation=some", "method.randomisation"),
        ("method.randomisation_orders=[bottom_up]", "method.randomisation_orders"),
        ("method.randomisation_measures=[pearson]", "method.randomisation_measures"),
        ("method.hog_cell=8", "method.hog_cell"),
        ("method.insertion_deletion_steps=0", "method.insertion_deletion_steps"),
        ("method.keep_only_correct=maybe", "method.keep_only_correct"),
        ("method.patch=32", "method.patch"),
        ("method.data_randomisation=yes", "method.data_randomisation"),
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


def test_options_insertion_deletion_neighbourhood_regions_and_every_randomisation(compose) -> None:
    cfg = compose([*STUDY, "method.methods=[gradient,gradcam]", "method.insertion_deletion=true",
                   "method.insertion_deletion_steps=4", "method.aopc_regions=neighbourhood", "method.patch=3",
                   "method.randomisation=all", "method.randomisation_orders=[cascading,independent]",
                   "method.randomisation_measures=[spearman,ssim]", "method.sparsity=false",
                   "method.ssim={gaussian: false, window: 5}"])  # fmt: skip
    run(cfg)
    results = Path(cfg.paths.output_dir) / "results"
    curves = pd.read_csv(results / "insertion_deletion.csv")
    assert list(curves.columns) == ["model", "method", "mode", "step", "fraction", "score"]
    assert set(curves["mode"]) == {"insertion", "deletion"} and curves["step"].max() == 4
    auc = pd.read_csv(results / "insertion_deletion_auc.csv")
    assert len(auc) == 2 * 2 * 3 and auc["auc"].between(0, 1).all()
    randomised = pd.read_csv(results / "randomisation.csv")
    assert set(randomised["order"]) == {"cascading", "independent"} and set(randomised["measure"]) == {"spearman",
                                                                                                       "ssim"}
    assert not (results / "sparsity.csv").exists()
    assert (Path(cfg.paths.output_dir) / "figures" / "insertion_deletion.png").is_file()


def test_data_randomisation_trains_the_run_model_on_permuted_labels(compose) -> None:
    cfg = compose([*STUDY, "method.methods=[gradient,gradcam]", "method.randomisation=false",
                   "method.data_randomisation=true", "method.randomisation_measures=[spearman_abs,ssim]"])  # fmt: skip
    run(cfg)
    out = Path(cfg.paths.output_dir)
    table = pd.read_csv(out / "results" / "data_randomisation.csv")
    assert list(table.columns) == ["model", "method", "image", "measure", "value"] and len(table) == 2 * 3 * 2
    assert table["value"].between(-1 - 1e-9, 1 + 1e-9).all() and (table["value"] < 1 - 1e-6).any()
    assert_run_refuses(compose, [*STUDY, "method.data_randomisation=true",
                                 "method.models=[{name: resnet20, trained: akamaster}]"], "method.data_randomisation")


def test_keep_only_correct_keeps_the_images_every_model_gets_right(compose) -> None:
    cfg = compose([*STUDY, "method.methods=[gradient]", "method.keep_only_correct=true", "method.images=4",
                   "method.randomisation=false"])  # fmt: skip
    run(cfg)
    predictions = pd.read_csv(Path(cfg.paths.output_dir) / "results" / "predictions.csv")
    assert 1 <= len(predictions) <= 4 and (predictions["label"] == predictions["predicted"]).all()
    indices = [int(s[len("test["):-1]) for s in predictions["source"]]
    assert indices == sorted(indices)


def test_keep_only_correct_refuses_image_files() -> None:
    from explainlab.errors import ConfigValueError
    from explainlab.runner.heatmaps import HeatmapStudy

    with pytest.raises(ConfigValueError, match="method.keep_only_correct"):
        HeatmapStudy([{"name": "resnet20", "trained": "akamaster"}], image_paths=["a.jpg"], keep_only_correct=True)


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


def test_imagenet_presets_refuse_without_image_files_naming_the_key(compose, monkeypatch) -> None:
    monkeypatch.delenv("EXPLAINLAB_IMAGENET_VAL", raising=False)
    for preset in ("heatmaps_aopc", "heatmaps_round2"):
        assert_run_refuses(compose, [f"experiment={preset}"], "method.image_folder")
    round2 = compose(["experiment=heatmaps_round2"])
    assert [m["name"] for m in round2.method.models] == ["alexnet", "inception_v3", "resnet152", "densenet161",
                                                         "vgg19", "squeezenet1_0"]  # fmt: skip
    assert round2.method.keep_only_correct and round2.method.dendrograms == "per_image"
    assert_run_refuses(compose, ["experiment=heatmaps_round2", "method.image_paths=[a.jpg]"],
                       "method.keep_only_correct")  # fmt: skip
    assert_run_refuses(compose, ["experiment=heatmaps_aopc", "method.image_folder=/nonexistent"],
                       "method.image_folder")  # fmt: skip


def test_aopc_preset_on_an_image_folder_with_one_model_offline(compose, tmp_path, monkeypatch) -> None:
    from torchvision.io import write_png

    _offline_hub(tmp_path, monkeypatch, present=("squeezenet1_1",))
    folder = tmp_path / "val"
    folder.mkdir()
    for i in range(3):
        write_png((torch.rand(3, 40, 48) * 255).to(torch.uint8), str(folder / f"ILSVRC2012_val_{i}.png"))
    monkeypatch.setenv("EXPLAINLAB_IMAGENET_VAL", str(folder))
    cfg = compose(["experiment=heatmaps_aopc", "method.images=2", "method.image_size=64", "method.aopc_steps=3",
                   "method.methods=[gradient,lrp_epsilon]", "trainer.enable_progress_bar=false"])  # fmt: skip
    assert cfg.method.patch == 9 and cfg.method.aopc_fill == "uniform" and cfg.method.aopc_orders == ["morf", "random"]
    run(cfg)
    results = Path(cfg.paths.output_dir) / "results"
    predictions = pd.read_csv(results / "predictions.csv")
    assert predictions["source"].tolist() == [str(folder / f"ILSVRC2012_val_{i}.png") for i in range(2)]
    aopc = pd.read_csv(results / "aopc.csv")
    assert set(aopc["model"]) == {"squeezenet1_1"} and aopc["step"].max() == 3
    assert len(pd.read_csv(results / "skipped.csv")) == 11


@pytest.mark.shared_data
def test_cifar_aopc_preset_is_the_papers_protocol(compose, shared_models, shared_data) -> None:
    cfg = compose(["experiment=heatmaps_aopc_cifar", f"dataset.root={shared_data}", "dataset.verify=false",
                   "dataset.download=false", f"paths.models_dir={shared_models}"])  # fmt: skip
    assert cfg.method.images == 100 and cfg.method.aopc_steps == 15 and cfg.method.aopc_fill == "uniform"
    assert cfg.method.aopc_orders == ["morf", "random"] and "lrp_epsilon" in cfg.method.methods
    assert [m["name"] for m in cfg.method.models] == ["resnet20", "resnet32", "resnet44", "resnet56"]
    small = compose(["experiment=heatmaps_aopc_cifar", f"dataset.root={shared_data}", "dataset.verify=false",
                     "dataset.download=false", f"paths.models_dir={shared_models}", "method.images=2",
                     "method.aopc_steps=2", "method.methods=[gradient_x_input,lrp_epsilon]",
                     "method.models=[{name: resnet20, trained: akamaster}]", "trainer.enable_progress_bar=false"])
    run(small)
    results = Path(small.paths.output_dir) / "results"
    sparsity = pd.read_csv(results / "sparsity.csv")
    # signed methods measured on their magnitude: concentrated maps, not half the image above half the maximum
    assert (sparsity["gini"] > 0.3).all() and (sparsity["area_above_half_max"] < 0.2).all()
    assert set(pd.read_csv(results / "aopc.csv")["order"]) == {"morf", "random"}
