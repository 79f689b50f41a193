"""`method=knowledge_points` end to end on digits: tables, figures, metrics, bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from explainlab.cli import run
from explainlab.errors import ConfigValueError

STUDY = [
    "method=knowledge_points",
    "recipe.epochs=2",
    "trainer.enable_progress_bar=false",
    "method.progress=false",
    "method.images=64",
    "method.sample_rounds=5",
    "method.regional_epochs=2",
    "method.importance_steps=3",
    "method.batch_size=32",
    "method.embeddings=[pca,isomap]",
]


def test_study_writes_counts_correlations_and_figures(compose) -> None:
    cfg = compose([*STUDY, "method.embeddings=[pca,isomap,drpr]", "method.shapley_images=4", "method.shapley_samples=2",
                   "method.figure_images=3"])  # fmt: skip
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    points = pd.read_csv(out / "results" / "knowledge_points.csv")
    assert list(points["layer"]) == ["conv1", "conv2"]  # small_cnn's defaults
    assert {"model", "epoch", "layer", "n_points", "n_reliable", "ratio", "alignment"} <= set(points.columns)
    assert (points["images"] == 64).all() and (points["regions"] == 64).all()  # 8x8 digits maps
    assert ((0 <= points["n_reliable"]) & (points["n_reliable"] <= points["n_points"])).all()
    assert (points["n_points"] <= 64 * 64).all()
    corr = pd.read_csv(out / "results" / "projection_corr.csv")
    assert list(corr["method"]) == ["ours", "pca", "isomap", "drpr"] and corr["correlation"].between(-1, 1).all()
    # Table 2 per image, mean ± std over images; Fig. 5 on the first 4 images
    for table in ("regional_corr", "shapley_corr"):
        rows = pd.read_csv(out / "results" / f"{table}.csv")
        assert list(rows.columns) == ["layer", "mean", "std", "n"] and list(rows["layer"]) == ["conv1", "conv2"]
        assert rows["mean"].between(-1, 1).all() and (rows["n"] <= (64 if table == "regional_corr" else 4)).all()
    # the counts under the paper's normalisation next to the calibrated one, with the saturation flag
    counts = pd.read_csv(out / "results" / "point_counts.csv")
    assert sorted(set(counts["normalisation"])) == ["calibrated", "paper"] and len(counts) == 4
    assert (counts["saturated"] == (counts["fraction"] >= 0.7)).all()
    calibrated = counts[counts["normalisation"] == "calibrated"].set_index("layer")
    assert list(calibrated.loc[["conv1", "conv2"], "n_points"]) == list(points["n_points"])
    assert (points["saturated"] == (points["fraction"] >= 0.7)).all()
    assert len(pd.read_csv(out / "results" / "sample_fit.csv")) == 5
    for name in ("sample_projection", "knowledge_points", "through_layers", "knowledge_points_on_images",
                 "traced_regions", "shapley_vs_importance_conv1", "shapley_vs_importance_conv2"):  # fmt: skip
        assert (out / "figures" / f"{name}.png").stat().st_size > 5000
    assert metrics["points/conv2"] == points.loc[1, "n_points"]
    # calibrated (default): the reference layer's scale is fitted, every layer gets its mean strength
    assert points["calibration_kl"].isna().tolist() == [True, False]
    assert points["strength"].iloc[0] == pytest.approx(points["strength"].iloc[1], rel=1e-4)


@pytest.mark.parametrize("strength", ["per_layer", "learned"])
def test_other_strength_normalisations(compose, strength: str) -> None:
    cfg = compose([*STUDY, f"method.strength={strength}", "method.embeddings=[]"])
    run(cfg)
    points = pd.read_csv(Path(cfg.paths.output_dir) / "results" / "knowledge_points.csv")
    if strength == "per_layer":  # every layer fitted on its own: no common strength
        assert points["calibration_kl"].notna().all() and points["scale"].nunique() == 2
    else:  # the paper's normalisation on the learned scale: the reference layer keeps its own
        assert points["calibration_kl"].isna().all() and points["scale"].iloc[1] == 1.0


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("method.layers=[fc1]", "method.layers"),
        ("method.layers=[conv2]", "method.reference_layer"),
        ("method.tau=1.5", "method.tau"),
        ("method.strength=absolute", "method.strength"),
        ("method.embeddings=[umap]", "method.embeddings"),
        ("method.kappa_tilde=0", "method.kappa_tilde"),
        ("method.kappa_p=-1", "method.kappa_p"),
        ("method.saturation=2", "method.saturation"),
        ("method.shapley_images=-1", "method.shapley_images"),
        ("method.shapley_layers=[fc1]", "method.shapley_layers"),
    ],
)
def test_bad_study_config_names_the_key(compose, override: str, key: str) -> None:
    overrides = [*STUDY, override]
    if key == "method.reference_layer":
        overrides.append("method.reference_layer=conv1")
    with pytest.raises(ConfigValueError, match=key):
        run(compose(overrides))


def test_emergence_through_training_reads_the_kept_epochs(compose) -> None:
    cfg = compose([*STUDY, "recipe.epochs=3", "method.epochs=[1,3]", "method.embeddings=[]"])
    run(cfg)
    out = Path(cfg.paths.output_dir)
    points = pd.read_csv(out / "results" / "knowledge_points.csv")
    assert sorted(points["epoch"].unique()) == [1, 3] and len(points) == 4
    assert (out / "figures" / "emergence.png").is_file()
    # The epoch-1 weights are a cache entry of their own, different from the final ones.
    from explainlab.runner.checkpoint_cache import CheckpointCache
    from explainlab.runner.context import RunContext
    from explainlab.runner.training import load_snapshot

    ctx = RunContext(cfg)
    first, final = load_snapshot(ctx, 1), CheckpointCache(cfg.paths.cache_dir).get(ctx.training_spec())["state_dict"]
    assert not torch.equal(first["conv1.weight"], final["conv1.weight"])


def test_epochs_need_a_model_trained_here(compose, tmp_path: Path) -> None:
    with pytest.raises(ConfigValueError, match="method.epochs"):
        run(compose([*STUDY, "method.epochs=[1]", f"model.checkpoint={tmp_path / 'w.pt'}"]))
    with pytest.raises(ConfigValueError, match="method.epochs"):
        run(compose([*STUDY, "method.epochs=[5]"]))


def test_adversarial_study_follows_regions_through_the_attack(compose) -> None:
    cfg = compose(
        [
            *STUDY,
            "method.embeddings=[]",
            "method.adversarial=true",
            "attack=pgd_linf",
            "attack.eps=0.3",
            "attack.steps=8",
            "attack.step=0.05",
        ]  # fmt: skip
    )
    run(cfg)
    out = Path(cfg.paths.output_dir)
    table = pd.read_csv(out / "results" / "adversarial.csv")
    assert list(table["layer"]) == ["conv1", "conv2"] and (table["attacked"] > 0).all()
    assert table["delta_orientation"].between(-1, 1).all()
    utilities = pd.read_csv(out / "results" / "adversarial_utility.csv")
    assert utilities["utility"].between(0, 1).all()
    # Types partition the regions important before or after the attack; none is counted twice.
    assert (table[["type1", "type2", "type3", "type4"]].sum(1) <= table["attacked"] * 64).all()
    assert (out / "figures" / "adversarial.png").is_file()
    with pytest.raises(ConfigValueError, match="method.adversarial"):
        run(compose([*STUDY, "method.adversarial=true"]))


TINY_CIFAR = [
    "dataset.verify=false",
    "dataset.download=false",
    "dataset.limit_train=256",
    "dataset.limit_test=64",
    "trainer.enable_progress_bar=false",
    "method.images=32",
    "method.sample_rounds=3",
    "method.regional_epochs=2",
    "method.importance_steps=3",
    "method.batch_size=16",
]


@pytest.mark.slow
@pytest.mark.shared_data
def test_cifar_emergence_preset_runs_on_a_tiny_limit(compose, shared_data: Path) -> None:
    """`experiment=kp_emergence_cifar`: a ResNet20 trained here, knowledge points after the kept
    epochs and at the end (a few batches instead of the preset's 6 epochs)."""
    cfg = compose(["experiment=kp_emergence_cifar", f"dataset.root={shared_data}", *TINY_CIFAR, "recipe.epochs=2",
                   "method.epochs=[1]", "method.progress=false"])  # fmt: skip
    assert cfg.model.name == "resnet20" and cfg.model.pretrained is None
    run(cfg)
    out = Path(cfg.paths.output_dir)
    points = pd.read_csv(out / "results" / "knowledge_points.csv")
    assert sorted(points["epoch"].unique()) == [1, 2] and list(points["layer"][:3]) == ["layer1", "layer2", "layer3"]
    assert (out / "figures" / "emergence.png").is_file()


def test_cifar_emergence_preset_composes_a_resnet20_trained_here(compose) -> None:
    cfg = compose(["experiment=kp_emergence_cifar"])
    assert cfg.model.name == "resnet20" and cfg.model.pretrained is None and cfg.dataset.num_classes == 10
    assert list(cfg.method.epochs) == [1, 2, 4] and cfg.recipe.epochs == 6 and cfg.method.images == 200
