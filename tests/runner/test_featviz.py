"""`method=featviz` end to end on digits: settings, diversity, examples, inversion, errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from explainlab.cli import run
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
