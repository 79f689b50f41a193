"""Issue 14's reliability suite: same spec -> same model; parallel jobs share caches; SIGTERM, NaN
models and damaged cache files handled loudly; every bad value named before work starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from explainlab.cli import EXIT_INTERRUPTED, run
from explainlab.errors import ConfigValueError, NonFiniteModelError
from explainlab.runner.checkpoint_cache import CheckpointCache
from explainlab.runner.context import RunContext
from explainlab.runner.activations import FeatureCache

TINY = ["dataset.limit_train=200", "recipe.epochs=1", "progress=false"]
# One tiny digits spec per study that trains the run's model (issue 14, section 1).
STUDIES = {
    "train": [],
    "library": ["method=library", "attack=pgd_linf", "method.thresholds=[0.8]", "method.confusion.thresholds=[0.8]",
                "method.cpl.images=20", "attack.eps_list=[0.1]", "attack.steps=3"],
    "knowledge_points": ["method=knowledge_points", "method.images=32", "method.sample_rounds=2",
                         "method.regional_epochs=1", "method.importance_steps=2", "method.batch_size=32",
                         "method.embeddings=[pca]"],
    "featviz": ["method=featviz", "method.steps=2", "method.targets=[{class: 3}]", "method.diversity_batch=0",
                "method.examples=2", "method.example_pool=20"],
    "distill": ["method=distill", "method.images=32", "method.layers=[conv2]", "method.knowledge_points=null"],
}  # fmt: skip


def user_env() -> dict[str, str]:
    """The user's environment: no cache or root override (each process uses ./.cache of its folder)."""
    drop = ("EXPLAINLAB_ROOT", "EXPLAINLAB_CACHE", "EXPLAINLAB_DATA", "EXPLAINLAB_MODELS", "EXPLAINLAB_CONF")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return env | {"PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "PYTHONPATH": os.pathsep.join(sys.path)}


def start(cwd: Path, *overrides: str) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "explainlab", *overrides], cwd=cwd, env=user_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def finish(proc: subprocess.Popen, timeout: int = 600) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def run_metrics(cwd: Path, task: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((cwd / "outputs" / task / "runs").glob("*/metrics.json"))]


# -- 1. same spec, same model ----------------------------------------------------------------------


def fingerprints_from_fresh_processes(tmp_path: Path, studies: list[str]) -> dict[str, str]:
    """Each study in its own fresh process and its own empty cache, all started together."""
    procs = {name: start(tmp_path / name, *TINY, *STUDIES[name]) for name in studies}
    found = {}
    for name, proc in procs.items():
        code, _, err = finish(proc)
        assert code == 0, (name, err[-3000:])
        (metrics,) = run_metrics(tmp_path / name, name)
        assert metrics["cached"] is not True if "cached" in metrics else True
        found[name] = metrics["model_fingerprint"]
    return found


def test_library_trains_the_model_of_method_train(compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In one process (fast); the slow test below runs every study in fresh processes."""
    monkeypatch.setenv("EXPLAINLAB_CACHE", str(tmp_path / "cache_train"))
    train = run(compose(TINY, tmp_path / "train"))
    torch.rand(1000)  # whatever ran before must not matter
    monkeypatch.setenv("EXPLAINLAB_CACHE", str(tmp_path / "cache_library"))
    library = run(compose([*TINY, *STUDIES["library"]], tmp_path / "library"))
    assert library["model_fingerprint"] == train["model_fingerprint"]


@pytest.mark.slow
def test_every_study_trains_the_model_of_method_train(tmp_path: Path) -> None:
    found = fingerprints_from_fresh_processes(tmp_path, list(STUDIES))
    assert set(found.values()) == {found["train"]}, found


# -- 2. parallel jobs --------------------------------------------------------------------------------


def test_two_processes_on_a_fresh_cache_train_once(tmp_path: Path) -> None:
    """Started together in one folder: one trains, the other waits for the lock and reuses; separate
    run folders although they start in the same second."""
    procs = [start(tmp_path, *TINY) for _ in range(2)]
    for proc in procs:
        code, _, err = finish(proc)
        assert code == 0, err[-3000:]
    metrics = run_metrics(tmp_path, "train")
    assert len(metrics) == 2  # two run folders
    assert sorted(m["cached"] for m in metrics) == [False, True]
    assert metrics[0]["model_fingerprint"] == metrics[1]["model_fingerprint"]
    assert len(list((tmp_path / ".cache" / "checkpoints").glob("*.pt"))) == 1


# -- 3. failures are loud ----------------------------------------------------------------------------


def test_sigterm_marks_the_run_interrupted_and_the_next_run_resumes(
    tmp_path: Path, compose, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    spec = ["recipe.epochs=20", "dataset.limit_train=200", "progress=false"]
    proc = start(tmp_path, *spec)
    partial = tmp_path / ".cache" / "checkpoints"
    deadline = time.time() + 300
    while not list(partial.glob("*.last.ckpt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc, timeout=120)
    assert code == EXIT_INTERRUPTED == 143, err[-3000:]
    assert "interrupted" in err and "Traceback" not in err
    (folder,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert json.loads((folder / "status.json").read_text())["status"] == "interrupted"
    assert not (folder / "metrics.json").exists()
    assert list(partial.glob("*.last.ckpt")) and not list(partial.glob("*.pt"))
    # The same spec again (here in this process) resumes from the last finished epoch and completes the entry.
    monkeypatch.setenv("EXPLAINLAB_CACHE", str(tmp_path / ".cache"))
    with caplog.at_level("INFO"):
        result = run(compose(spec, tmp_path / "again"))
    assert "resuming interrupted training" in caplog.text and not result["cached"]
    assert len(list(partial.glob("*.pt"))) == 1 and not list(partial.glob("*.last.ckpt"))


FAST = ["dataset=synthetic", "model=small_cnn", "recipe.epochs=1", "trainer.enable_progress_bar=false"]


def test_a_nan_model_is_refused_and_never_cached(compose, tmp_path: Path) -> None:
    cfg = compose([*FAST, "model.std=[0.0]"])
    with pytest.raises(NonFiniteModelError, match="small_cnn .*not cached"):
        run(cfg)
    folder = Path(cfg.paths.cache_dir) / "checkpoints"
    assert not list(folder.glob("*.pt")) and not list(folder.glob("*.last.ckpt"))


def test_a_damaged_cache_entry_is_moved_aside_and_the_model_trained_again(compose, tmp_path: Path) -> None:
    first = run(compose(FAST, tmp_path / "a"))
    path = Path(first["cache_path"])
    path.write_bytes(path.read_bytes()[:1000])  # truncated by a full disk or a killed copy
    with pytest.warns(RuntimeWarning, match=f"{path.name} is unusable"):
        again = run(compose(FAST, tmp_path / "b"))
    assert not again["cached"] and again["model_fingerprint"] == first["model_fingerprint"]
    assert len(list(path.parent.glob(f"{path.name}.corrupt-*"))) == 1
    assert run(compose(FAST, tmp_path / "c"))["cached"]


def test_an_unreadable_last_checkpoint_is_moved_aside_and_training_starts_over(compose, tmp_path: Path) -> None:
    ctx = RunContext(compose(FAST, tmp_path / "a"))
    partial = CheckpointCache(ctx.cfg.paths.cache_dir).partial_path(ctx.training_spec())
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match=r"\.last\.ckpt is unusable"):
        result = run(compose(FAST, tmp_path / "b"))
    assert not result["cached"] and result["test/acc"] > 0
    assert len(list(partial.parent.glob(f"{partial.name}.corrupt-*"))) == 1


def test_activation_entry_is_checked_against_its_content(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    spec = {"model": "abc", "split": "test", "layer": "conv1"}
    values = torch.randn(20, 6)
    path = cache.put(spec, values)
    assert torch.equal(cache.get(spec), values)
    entry = torch.load(path, weights_only=True)
    entry["values"] = values * 2  # same key, same shape and dtype, other content
    torch.save(entry, path)
    with pytest.warns(RuntimeWarning, match="content hash"):
        assert cache.get(spec) is None
    assert not path.exists()


# -- 4. every bad value named before work starts ----------------------------------------------------

BAD_VALUES = [
    (["method=library", "method.block_size=0"], "method.block_size"),
    (["method=library", "method.thresholds=[]"], "method.thresholds"),
    (["method=library", "method.cpl.images=0"], "method.cpl.images"),
    (["method=library", "attack=pgd_linf", "attack.eps_list=[]"], "attack.eps_list"),
    (["method=library", "attack=pgd_linf", "attack.fold_bn=maybe"], "attack.fold_bn"),
    (["method=detect", "attack=pgd_linf", "attack.backend=advertorch", "attack.compile=true"], "attack.compile"),
    (["method=knowledge_points", "attack=pgd_linf", "attack.steps=0"], "attack.steps"),
    (["method=library", "method.cpl.pairs=[[conv1,nope]]"], "method.cpl.pairs"),
    (["method=library", "method.cpl.top_k=0"], "method.cpl.top_k"),
    (["method=heatmaps", "method.occlusion_window=0"], "method.occlusion_window"),
    (["method=heatmaps", "method.patch=0"], "method.patch"),
    (["method=heatmaps", "method.target=99"], "method.target"),
    (["method=featviz", "method.targets=[{class: 99}]"], "method.targets[0].class"),
    (["trainer.max_epochs=-1"], "trainer.max_epochs"),
    (["model.in_channels=3"], "model.in_channels"),
    (["model.mean=[0.5,0.5]"], "model.mean"),
    (["model=resnet20"], "model='resnet20'"),  # a CIFAR model on the 1-channel digits
]


@pytest.mark.parametrize(("overrides", "key"), BAD_VALUES, ids=[key for _, key in BAD_VALUES])
def test_bad_value_is_refused_naming_the_key_before_work_starts(compose, overrides: list[str], key: str) -> None:
    cfg = compose(overrides)
    with pytest.raises(ConfigValueError, match=key.replace("[", r"\[").replace("]", r"\]")) as err:
        run(cfg)
    assert "expected" in str(err.value)
    assert not Path(cfg.paths.cache_dir).exists() or not any(Path(cfg.paths.cache_dir).rglob("*.pt"))


def test_the_command_line_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    code, _, err = finish(start(tmp_path, "method=library", "method.block_size=0"), timeout=300)
    assert code == 2 and "Traceback" not in err
    assert "explainlab: error: method.block_size=0 is invalid: expected an integer >= 1." in err
    (folder,) = (tmp_path / "outputs" / "library" / "runs").iterdir()
    assert json.loads((folder / "status.json").read_text())["status"] == "failed"
