"""The library-network study end to end on small data: tables, figures, caching, sweeps, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from explainlab.cli import run
from explainlab.errors import ConfigValueError
from explainlab.methods.library import LibraryNetwork

STUDY = [
    "experiment=quickstart",
    "recipe.epochs=3",
    "trainer.enable_progress_bar=false",
    "method.progress=false",
    "method.thresholds=[0.6,0.8]",
    "method.confusion.thresholds=[0.8]",
    "attack.eps_list=[0.1,0.3]",
    "attack.steps=5",
    "method.cpl.images=40",
]


def test_library_study_writes_the_paper_tables(compose) -> None:
    cfg = compose(STUDY)
    metrics = run(cfg)
    out = Path(cfg.paths.output_dir)
    sizes = pd.read_csv(out / "results" / "library_sizes.csv")
    assert list(sizes.columns) == ["layer", "threshold", "size"] and len(sizes) == 8
    # Higher θ stores more patterns.
    for _, rows in sizes.groupby("layer"):
        assert rows.sort_values("threshold")["size"].is_monotonic_increasing
    pred = pd.read_csv(out / "results" / "predictions.csv")
    assert list(pred.columns) == [
        "layer",
        "threshold",
        "top_k",
        "n",
        "top1_agreement",
        "top1_accuracy",
        "top3_agreement",
    ]
    assert (pred.top3_agreement >= pred.top1_agreement).all() and pred.top1_agreement.max() > 0.8
    confusion = pd.read_csv(out / "results" / "confusion" / "fc2_0.8.csv")
    assert confusion.shape == (10, 11)
    cpl = pd.read_csv(out / "results" / "cpl.csv")
    assert list(cpl.columns) == ["index", "eps", "threshold_set", "is_adversarial", "cpl"]
    assert len(cpl) == 2 * 3 * 40 and cpl["index"].max() == 39
    auroc = pd.read_csv(out / "results" / "auroc.csv")
    assert list(auroc.columns) == ["eps", "threshold_set", "auroc", "n_clean", "n_adv"] and len(auroc) == 4
    for name in ("library_sizes", "agreement", "confusion_0.8", "cpl_histograms", "auroc", "training_curves"):
        assert (out / "figures" / f"{name}.png").is_file(), name
    assert json.loads((out / "metrics.json").read_text())["dnn/test_acc"] == metrics["dnn/test_acc"]


def test_factored_taps_give_the_plain_tables(compose, tmp_path: Path) -> None:
    """Holding conv1, conv2, fc1 through their inputs (all factorable in the quickstart's small CNN)
    changes no library; predictions agree up to rounding. (Classes that no nearby node's sample was
    answered with get exactly equal scores, -Σg; float rounding orders such ties, which can move a
    top-3 decision.)"""
    tables = {}
    for factored in ("true", "false"):
        cfg = compose(STUDY + [f"method.factored_taps={factored}"], tmp_path / factored)
        run(cfg)
        tables[factored] = {
            name: pd.read_csv(tmp_path / factored / "results" / f"{name}.csv")
            for name in ("library_sizes", "predictions", "auroc")
        }
    assert tables["true"]["library_sizes"].equals(tables["false"]["library_sizes"])
    pd.testing.assert_frame_equal(tables["true"]["predictions"], tables["false"]["predictions"], atol=0.01)
    pd.testing.assert_frame_equal(tables["true"]["auroc"], tables["false"]["auroc"], atol=0.02)


def test_library_predictions_match_the_estimator(compose) -> None:
    """The study's numbers equal a direct use of LibraryNetwork on the same activations."""
    from explainlab.runner.activations import extract
    from explainlab.runner.context import RunContext

    cfg = compose(STUDY + ["method.thresholds=[0.7]"])
    run(cfg)
    pred = pd.read_csv(Path(cfg.paths.output_dir) / "results" / "predictions.csv")
    ctx = RunContext(cfg)
    from explainlab.runner.training import ensure_trained

    ensure_trained(ctx)
    model = ctx.model.eval()
    train = extract(model, ctx.datamodule.loader("train"), ["conv2"])
    test = extract(model, ctx.datamodule.loader("test"), ["conv2"])
    lib = LibraryNetwork(0.7).fit(train["conv2"]).associate(train["conv2"], train["logits"].argmax(1), 10)
    agree = float((lib.predict(test["conv2"], top_k=3) == test["logits"].argmax(1)).float().mean())
    assert agree == pytest.approx(float(pred[pred.layer == "conv2"].top1_agreement.iloc[0]))


def test_rerun_reuses_model_and_activations_and_gives_identical_tables(compose, tmp_path: Path) -> None:
    first = compose(STUDY + ["method.cpl.images=20"], tmp_path / "a")
    run(first)
    cache = Path(first.paths.cache_dir) / "haps"
    entries = sorted(cache.glob("*.pt"))
    assert entries
    stamps = [p.stat().st_mtime_ns for p in entries]
    second = compose(STUDY + ["method.cpl.images=20", "method.threshold=0.8"], tmp_path / "b")
    metrics = run(second)
    assert metrics["cached"] is True
    assert [p.stat().st_mtime_ns for p in sorted(cache.glob("*.pt"))] == stamps  # activations read, not re-extracted
    a = pd.read_csv(tmp_path / "a" / "results" / "predictions.csv")
    b = pd.read_csv(tmp_path / "b" / "results" / "predictions.csv")
    assert b.threshold.unique().tolist() == [0.8]
    pd.testing.assert_frame_equal(a[a.threshold == 0.8].reset_index(drop=True), b)


def test_native_and_advertorch_backends_give_the_same_tables(compose, tmp_path: Path) -> None:
    common = STUDY + ["method.thresholds=[0.8]", "method.cpl.images=16", "attack.random_start=false"]
    run(compose(common + ["attack.backend=native"], tmp_path / "n"))
    run(compose(common + ["attack.backend=advertorch"], tmp_path / "a"))
    a = pd.read_csv(tmp_path / "n" / "results" / "cpl.csv")
    b = pd.read_csv(tmp_path / "a" / "results" / "cpl.csv")
    assert (a.cpl - b.cpl).abs().max() < 1e-5


@pytest.mark.parametrize(
    "override,key",
    [
        ("method.thresholds=[0.5,1.5]", "method.thresholds"),
        ("method.layers=[conv1,conv9]", "method.layers"),
        ("method.top_k=0", "method.top_k"),
        ("method.confusion.variant=x", "method.confusion.variant"),
    ],
)
def test_bad_study_config_names_the_key(compose, override: str, key: str) -> None:
    from hydra.errors import InstantiationException

    with pytest.raises((ConfigValueError, InstantiationException), match=key):
        run(compose(STUDY + [override]))


def test_per_layer_thresholds_name_studied_layers() -> None:
    from explainlab.runner.library import LibraryStudy

    with pytest.raises(ConfigValueError, match="method.layer_thresholds.*bogus"):
        LibraryStudy(["conv1"], layer_thresholds={"conv1": [0.5], "bogus": [0.5]})
    study = LibraryStudy(["conv1", "fc1"], thresholds=[0.7], layer_thresholds={"conv1": 0.3})
    assert study.thresholds == {"conv1": [0.3], "fc1": [0.7]}


def test_cpl_indices_follow_test_order(compose) -> None:
    cfg = compose(STUDY + ["method.thresholds=[0.8]", "method.cpl.images=12", "attack.eps_list=[0.2]"])
    run(cfg)
    cpl = pd.read_csv(Path(cfg.paths.output_dir) / "results" / "cpl.csv")
    for (_, _), rows in cpl.groupby(["eps", "threshold_set"]):
        assert rows["index"].tolist() == list(range(12))
    assert torch.tensor(cpl.cpl.values).abs().max() <= 1 + 1e-9


def test_two_process_ddp_tables_equal_single_process(compose, tmp_path: Path) -> None:
    """Activations, Hebbian sums, predictions and attacks split over 2 CPU processes; same tables."""
    trained = run(compose(STUDY + ["method.thresholds=[0.8]", "method.cpl.images=24"], tmp_path / "train"))
    weights = [
        "method.thresholds=[0.7,0.8]",
        "method.cpl.images=24",
        "attack.batch_size=8",
        f"model.checkpoint={trained['cache_path']}",
        "method.block_size=100",
    ]
    single = compose(STUDY + weights, tmp_path / "single")
    run(single)
    # A cache of its own: activations and attacked images are computed over the 2 processes, not read.
    own_cache = [f"paths.cache_dir={tmp_path / 'ddp_cache'}"]
    ddp = compose(STUDY + weights + ["trainer=ddp_spawn", *own_cache], tmp_path / "ddp")
    metrics = run(ddp)
    assert metrics["processes"] == 2 and metrics["dnn/test_acc"] > 0
    assert len(list((tmp_path / "ddp_cache" / "attacks").glob("*.pt"))) == 2  # rank 0 wrote each radius once
    # Library sizes and predictions are identical; CPL floats may differ in the last bits because
    # each worker process runs with another number of CPU threads (Lightning sets OMP_NUM_THREADS to
    # cores / processes), and CPU matrix products round differently with another thread count;
    # g(x) = exp(-(1 - x)/0.01) turns a 1e-7 change of a cosine into a 1e-5 relative change of a link
    # (observed CPL differences: up to 1.3e-5 relative).
    for table in ("library_sizes", "predictions", "cpl", "auroc", "confusion/conv1_0.7"):
        a = pd.read_csv(tmp_path / "single" / "results" / f"{table}.csv")
        b = pd.read_csv(tmp_path / "ddp" / "results" / f"{table}.csv")
        exact = table in ("library_sizes", "predictions")
        pd.testing.assert_frame_equal(a, b, check_exact=exact, rtol=1e-4, atol=1e-6)


def test_a_batch_normalisation_attack_split_into_batches_is_warned_about(compose, caplog) -> None:
    """attack.compat_bn_train normalises with the statistics of each attacked batch: the study says so
    before it attacks when its images do not fit one batch (issue 17, section 0)."""
    cfg = compose(STUDY + ["method.thresholds=[0.8]", "method.cpl.images=12", "attack.eps_list=[0.2]",
                           "attack.compat_bn_train=true", "attack.batch_size=5"])  # fmt: skip
    with caplog.at_level("WARNING"):
        run(cfg)
    warned = [r.getMessage() for r in caplog.records if "compat_bn_train" in r.getMessage()]
    assert len(warned) == 1 and "attack.batch_size=5 is smaller than the 12 attacked images" in warned[0]
