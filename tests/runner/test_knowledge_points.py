"""`method=knowledge_points` end to end on digits: tables, figures, metrics, bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

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
    cfg = compose(STUDY)
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    points = pd.read_csv(out / "results" / "knowledge_points.csv")
    assert list(points["layer"]) == ["conv1", "conv2"]  # small_cnn's defaults
    assert {"model", "epoch", "layer", "n_points", "n_reliable", "ratio", "alignment"} <= set(points.columns)
    assert (points["images"] == 64).all() and (points["regions"] == 64).all()  # 8x8 digits maps
    assert ((0 <= points["n_reliable"]) & (points["n_reliable"] <= points["n_points"])).all()
    assert (points["n_points"] <= 64 * 64).all()
    corr = pd.read_csv(out / "results" / "projection_corr.csv")
    assert list(corr["method"]) == ["ours", "pca", "isomap"] and corr["correlation"].between(-1, 1).all()
    assert len(pd.read_csv(out / "results" / "regional_corr.csv")) == 2
    assert len(pd.read_csv(out / "results" / "sample_fit.csv")) == 5
    for name in ("sample_projection", "knowledge_points"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 5000
    assert metrics["points/conv2"] == points.loc[1, "n_points"]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("method.layers=[fc1]", "method.layers"),
        ("method.layers=[conv2]", "method.reference_layer"),
        ("method.tau=1.5", "method.tau"),
        ("method.embeddings=[umap]", "method.embeddings"),
    ],
)
def test_bad_study_config_names_the_key(compose, override: str, key: str) -> None:
    overrides = [*STUDY, override]
    if key == "method.reference_layer":
        overrides.append("method.reference_layer=conv1")
    with pytest.raises(ConfigValueError, match=key):
        run(compose(overrides))
