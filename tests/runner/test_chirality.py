"""`method=chirality` end to end: tables, figures, skipped weights offline, reproducibility, errors."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pandas as pd
import pytest
import torch
import torchvision
from hydra.utils import instantiate

from explainlab.cli import run
from explainlab.methods.chirality import ChiralityProfile
from tests.helpers import assert_run_refuses

STUDY = [
    "method=chirality",
    "recipe.epochs=2",
    "trainer.enable_progress_bar=false",
    "method.progress=false",
    "method.seeds=[0,1]",
    "method.init_models=[small_cnn]",
]
COLUMNS = {"model", "weights", "init", "seed", "layer", "stage", "kernels", "kernel_shape", "similarity",
           "similarity_noflip"}  # fmt: skip


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)


def test_study_offline_profiles_what_it_has_and_lists_what_it_skipped(compose, offline, capsys) -> None:
    cfg = compose(
        [
            *STUDY,
            "method.models=[{name: small_cnn, trained: run},{name: resnet20, trained: akamaster},"
            "{name: vgg11, trained: torchvision}]",
        ]  # fmt: skip
    )
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    # The summary reads E(M) against what the untrained seeds alone differ by.
    assert "untrained seeds differ by" in capsys.readouterr().out
    table = pd.read_csv(out / "results" / "chirality.csv")
    assert COLUMNS <= set(table.columns)
    profiles = table.groupby(["model", "weights", "init", "seed"]).size()
    assert set(profiles.index.get_level_values("model")) == {"small_cnn", "resnet20", "vgg11"}
    assert set(table[table["weights"] == "trained"]["model"]) == {"small_cnn"}
    # small_cnn: 4 initialisations x 2 seeds untrained + 1 trained; others: default x 2 seeds.
    assert len(profiles.loc["small_cnn"]) == 9 and len(profiles.loc["vgg11"]) == 2
    skipped = pd.read_csv(out / "results" / "skipped.csv")
    assert set(skipped["model"]) == {"resnet20", "vgg11"}
    reasons = dict(zip(skipped["model"], skipped["reason"], strict=True))
    assert "resnet20-12fca82f.th" in reasons["resnet20"] and "EXPLAINLAB_MODELS" in reasons["resnet20"]
    assert "vgg11" in reasons["vgg11"] and "hub" in reasons["vgg11"]
    residual = pd.read_csv(out / "results" / "residual.csv")
    assert set(residual["model"]) == {"small_cnn"} and len(residual) == 2
    assert metrics["E_M/small_cnn"] == pytest.approx(residual["E"].sum())
    for name in ("fig3_trained_vs_untrained", "fig4_initialisations", "fig5_stage_trends", "fig6_noflip",
                 "fingerprint"):  # fmt: skip
        assert (out / "figures" / f"{name}.png").stat().st_size > 5000
    saved = json.loads((out / "metrics.json").read_text())
    assert {s["model"] for s in saved["skipped"]} == {"resnet20", "vgg11"}

    # The untrained profile at the run's seed is the exact initialisation training started from.
    torch.manual_seed(cfg.seed)
    start = ChiralityProfile().fit(instantiate(cfg.model)).to_frame()
    at_seed = table[(table["model"] == "small_cnn") & (table["init"] == "default") & (table["seed"] == cfg.seed)]
    assert at_seed["similarity"].tolist() == pytest.approx(start["similarity"].tolist(), rel=1e-6)

    # A rerun (training now from the cache) gives identical tables.
    again = compose(
        [*STUDY, "method.models=[{name: small_cnn, trained: run},{name: resnet20, trained: akamaster},"
                 "{name: vgg11, trained: torchvision}]"], output_dir=out.parent / "again")  # fmt: skip
    run(again)
    pd.testing.assert_frame_equal(table, pd.read_csv(out.parent / "again" / "results" / "chirality.csv"))


@pytest.mark.shared_data
def test_published_cifar_resnet_is_told_apart_from_its_initialisation(compose, shared_models) -> None:
    cfg = compose([*STUDY, "method.models=[{name: resnet20, trained: akamaster}]", "method.init_models=[]"])
    metrics = run(cfg)
    residual = pd.read_csv(Path(cfg.paths.output_dir) / "results" / "residual.csv")
    assert len(residual) == 19 and residual["analysed"].sum() == 18  # the stem is left out of E(M)
    # Training raises S well above the Gaussian-initialisation value in every stage.
    assert (residual["similarity_trained"] > residual["similarity_untrained"]).mean() > 0.9
    assert metrics["E_M/resnet20"] > 0.3
    assert metrics["fingerprint/accuracy/trained_by_deviation"] == 1.0


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("method.models=[{name: resnet7, trained: none}]", "method.models[0].name"),
        ("method.models=[{name: resnet20, trained: imagenet}]", "method.models[0].trained"),
        ("method.models=[{name: resnet20, trained: run}]", "method.models[0].name"),
        ("method.models=[{model: resnet20}]", "method.models[0]"),
        ("method.inits=[orthogonal]", "method.inits"),
        ("method.seeds=[]", "method.seeds"),
        ("method.models=[]", "method.models"),
    ],
)
def test_bad_study_config_names_the_key(compose, override: str, key: str) -> None:
    assert_run_refuses(compose, [*STUDY, override], key)
