"""The detection study end to end on the digits (seconds): tables, figures, attack cache, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from explainlab.cli import run
from tests.helpers import assert_run_refuses

STUDY = [
    "method=detect",
    "attack=pgd_linf",
    "recipe.epochs=1",
    "progress=false",
    "attack.eps_list=[0.1,0.3]",
    "attack.steps=5",
    "method.images=60",
    "method.detector_args.knn={k:10}",
    "method.detector_args.deep_knn={k:10,calibration:100}",
    "method.detector_args.lid={k:10,batch_size:50,n_batches:2}",
    "method.cpl.thresholds=[0.6,0.8]",
]


def test_detect_study_writes_the_table_figures_and_reuses_attacks(compose, tmp_path: Path, capfd) -> None:
    cfg = compose([o if o != "progress=false" else "progress=true" for o in STUDY], tmp_path / "first")
    metrics = run(cfg)
    # Every long loop shows a bar, the CPL patterns of the training split included.
    shown = capfd.readouterr().err
    for bar in ("activations (train)", "library construction"):
        assert bar in shown, bar
    out = Path(cfg.paths.output_dir)
    table = pd.read_csv(out / "results" / "detection.csv")
    columns = "scenario detector protocol threshold_set eps filtered attack_success_rate robust_accuracy auroc aupr"
    for column in [*columns.split(), "fpr_at_95_tpr", "n_clean", "n_adv", "fit_s", "score_s"]:
        assert column in table.columns, column
    # 6 detectors + 2 CPL threshold sets, 2 protocols, 2 filter settings, 2 eps.
    assert len(table) == 8 * 2 * 2 * 2
    assert set(table.threshold_set.dropna()) == {"theta=0.6", "theta=0.8"}
    full = table[(table.protocol == "benign") & ~table.filtered]
    assert (full.n_clean == 60).all() and full.auroc.between(0, 1).all()
    assert (table[(table.protocol == "supervised") & ~table.filtered].n_clean == 30).all()
    scores = pd.read_csv(out / "results" / "detection_scores.csv")
    assert set(scores.columns) == {"detector", "eps", "index", "is_adversarial", "score"}
    assert len(scores) == 8 * 2 * 2 * 60
    for name in ("detection_auroc", "detection_roc", "detection_histograms"):
        assert (out / "figures" / f"{name}.png").is_file(), name
    assert metrics["attacks_reused"] == 0
    assert json.loads((out / "metrics.json").read_text())["auroc/msp/eps=0.3"] == metrics["auroc/msp/eps=0.3"]
    # Same model, attack and images: the attacked images come from the cache, same numbers.
    again = run(compose([*STUDY, "method.detectors=[msp,energy]"], tmp_path / "second"))
    assert again["attacks_reused"] == 2
    # (threshold_set and note are empty for msp and energy: read back as NaN of any dtype.)
    ignored = ["fit_s", "score_s", "threshold_set", "note"]
    second = pd.read_csv(tmp_path / "second" / "results" / "detection.csv").drop(columns=ignored)
    first = table[table.detector.isin(["msp", "energy"])].reset_index(drop=True).drop(columns=ignored)
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("method.detectors=[msp,odin]", "method.detectors"),
        ("method.images=1", "method.images"),
        ("method.held_out=1.0", "method.held_out"),
        ("method.protocols=[benign,oracle]", "method.protocols"),
        ("method.cpl.threshold_sets={a:{conv1:0.5}}", "method.cpl.threshold_sets.a"),
    ],
)
def test_detect_study_refuses_bad_settings_before_work(compose, override: str, key: str) -> None:
    assert_run_refuses(compose, [*STUDY, override], key)


def test_detect_study_needs_an_attack(compose) -> None:
    assert_run_refuses(compose, ["method=detect", "attack=none"], "attack")


def test_ood_scenario_scores_the_test_images_against_noise(compose) -> None:
    cfg = compose(["method=detect", "method.scenario=ood", "recipe.epochs=1", "progress=false", "method.images=40",
                   "method.detectors=[msp,mahalanobis,cpl]", "method.outliers=[uniform_noise,digits]"])  # fmt: skip
    metrics = run(cfg)
    table = pd.read_csv(Path(cfg.paths.output_dir) / "results" / "detection.csv")
    assert set(table.outliers) == {"uniform_noise", "digits"} and set(table.scenario) == {"ood"}
    assert not table.filtered.any() and table.attack_success_rate.isna().all() and len(table) == 3 * 2 * 2
    # The digits' own test images are no outliers: chance level for every detector.
    same = table[(table.outliers == "digits") & (table.protocol == "benign")]
    assert same.auroc.tolist() == pytest.approx([0.5] * 3, abs=1e-9)
    assert "auroc/msp/uniform_noise" in metrics


def test_unknown_outlier_set_is_refused(compose) -> None:
    assert_run_refuses(compose, ["method=detect", "method.scenario=ood", "method.outliers=[svhn]"], "method.outliers")
