"""Attacked images, one rule for every study: the cache and its key, the seed rule, the lock that
makes parallel jobs attack once (DDP ranks > 0 never wait on it), and the library and detection
studies reading the same adversarial images."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from explainlab.attacks.pgd import LinfPGD
from explainlab.cli import run
from explainlab.runner.attacked import AttackCache, attack_seed, attacked_images

CPU = torch.device("cpu")


def _problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, LinfPGD]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    return model, x, y, LinfPGD(eps=0.1, steps=3, step=0.05, batch_size=4)


def test_attacked_images_are_cached_by_their_key(tmp_path: Path) -> None:
    model, x, y, attack = _problem()
    cache = AttackCache(tmp_path)
    spec = {"model": "m", "images": "test[0:6]"}
    adv, hit = attacked_images(model, attack, x, y, seed=0, spec=spec, cache=cache, device=CPU)
    assert not hit and (adv - x).abs().max() <= 0.1 + 1e-6
    again, hit = attacked_images(model, attack, x, y, seed=0, spec=spec, cache=cache, device=CPU)
    assert hit and torch.equal(again, adv)
    other, hit = attacked_images(model, attack, x, y, seed=1, spec=spec, cache=cache, device=CPU)
    assert not hit and not torch.equal(other, adv)
    # An entry whose stored key differs (a renamed or corrupted file) is not used: it is moved aside
    # with a warning naming it, and the attack is run again (results.cache.EntryStore, issue 14).
    files = sorted(cache.folder.glob("*.pt"))
    files[0].write_bytes(files[1].read_bytes())
    with pytest.warns(RuntimeWarning, match="written for another key"):
        redone = [attacked_images(model, attack, x, y, seed=s, spec=spec, cache=cache, device=CPU) for s in (0, 1)]
    assert [hit for _, hit in redone].count(False) == 1
    assert torch.equal(redone[0][0], adv) and torch.equal(redone[1][0], other)
    assert len(list(cache.folder.glob("*.corrupt-*"))) == 1


def test_a_radius_gets_the_same_images_whatever_else_is_swept() -> None:
    """The seed follows the radius's value and the batch, not the radius's place in eps_list."""
    model, x, y, attack = _problem()
    assert attack_seed(0, 0.1, 1) == attack_seed(0, 0.1 + 1e-9, 1) != attack_seed(0, 0.2, 1) != attack_seed(1, 0.2, 1)
    alone, _ = attacked_images(model, attack.with_eps(0.1), x, y, seed=3, spec={}, cache=None, device=CPU)
    attacked_images(model, attack.with_eps(0.05), x, y, seed=3, spec={}, cache=None, device=CPU)
    after, _ = attacked_images(model, attack.with_eps(0.1), x, y, seed=3, spec={}, cache=None, device=CPU)
    assert torch.equal(alone, after)
    # Each batch from its own start: the first batch's images do not depend on the images after it.
    first, _ = attacked_images(model, attack.with_eps(0.1), x[:4], y[:4], seed=3, spec={}, cache=None, device=CPU)
    assert torch.equal(first, alone[:4])


_ATTACK = """
import os, sys, time, torch
from explainlab.attacks.pgd import LinfPGD
from explainlab.runner.attacked import AttackCache, attacked_images

class Held(torch.nn.Module):  # each forward pass waits until the file argv[2] exists
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(16, 3)
    def forward(self, x):
        while not os.path.exists(sys.argv[2]):
            time.sleep(0.02)
        return self.linear(x.flatten(1))

torch.manual_seed(1)
x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
print("started", flush=True)
adv, hit = attacked_images(Held(), LinfPGD(eps=0.1, steps=3, step=0.05, batch_size=4), x, y, seed=0,
                           spec={"model": "held"}, cache=AttackCache(sys.argv[1]), device=torch.device("cpu"))
print("hit" if hit else "attacked", float(adv.sum()), flush=True)
"""


@pytest.fixture
def attack_in() -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts `_ATTACK` in a subprocess; whatever still runs when the test ends (a failed assert
    leaves held processes waiting for their release file) is killed."""
    started: list[subprocess.Popen] = []

    def start(tmp_path: Path, release: Path, **env: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env}
        started.append(subprocess.Popen([sys.executable, "-c", _ATTACK, str(tmp_path), str(release)], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _inside(*procs: subprocess.Popen) -> None:
    """Wait until each process is inside attacked_images: holding the lock, waiting for it, or attacking."""
    for proc in procs:
        assert proc.stdout.readline().strip() == "started", proc.stderr.read()
    time.sleep(0.5)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    """(stdout, stderr) after the process ends, read through the same buffered pipes `_inside` read
    from: `communicate()` reads the raw pipe and would miss lines `readline()` already buffered."""
    proc.wait(timeout=timeout)  # the outputs are a few lines: no pipe fills up
    return proc.stdout.read(), proc.stderr.read()


def test_parallel_jobs_attack_once_and_ddp_ranks_above_zero_never_wait(tmp_path: Path, attack_in) -> None:
    release = tmp_path / "release"
    first = attack_in(tmp_path, release)
    _inside(first)  # holds the key's lock, its attack held back until `release` exists
    second = attack_in(tmp_path, release)  # a parallel job of the same spec
    worker = attack_in(tmp_path, tmp_path, LOCAL_RANK="1")  # a worker process of a DDP launch, not held back
    _inside(second, worker)
    out, err = _finish(worker)
    assert worker.returncode == 0, err
    assert out.splitlines()[-1].startswith("attacked")  # it did not wait for the lock the first holds ...
    assert first.poll() is None and second.poll() is None  # ... which the second waits for
    assert not list((tmp_path / "attacks").glob("*.pt"))  # and wrote nothing
    release.touch()
    outs = [_finish(p) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], [err for _, err in outs]
    lines = [out.splitlines()[-1].split() for out, _ in outs]
    assert [line[0] for line in lines] == ["attacked", "hit"] and lines[0][1] == lines[1][1]  # the same images
    assert len(list((tmp_path / "attacks").glob("*.pt"))) == 1


def test_library_and_detection_studies_attack_the_same_images(compose, tmp_path: Path) -> None:
    """Same model, attack and images: the detection study reads the library study's cached attacks,
    and, in a fresh cache, attacks them bit for bit the same."""
    common = ["recipe.epochs=1", "progress=false", "attack=pgd_linf", "attack.eps_list=[0.1,0.3]", "attack.steps=3"]
    library = [*common, "method=library", "method.thresholds=[0.6]", "method.cpl.images=30"]
    detect = [*common, "method=detect", "method.images=30", "method.detectors=[msp]"]
    first = compose(library, tmp_path / "library")
    run(first)
    assert run(compose(detect, tmp_path / "detect"))["attacks_reused"] == 2
    shared = sorted(Path(first.paths.cache_dir).glob("attacks/*.pt"))
    assert len(shared) == 2
    other = tmp_path / "other_cache"
    assert run(compose([*detect, f"paths.cache_dir={other}"], tmp_path / "fresh"))["attacks_reused"] == 0
    for path in shared:
        theirs = torch.load(other / "attacks" / path.name, weights_only=True)
        assert torch.equal(torch.load(path, weights_only=True)["values"], theirs["values"])


def test_each_radius_says_what_it_attacks_and_when_it_reads_the_cache(tmp_path: Path, caplog) -> None:
    model, x, y, attack = _problem()
    cache = AttackCache(tmp_path)
    with caplog.at_level("INFO", logger="explainlab.runner.attacked"):
        attacked_images(model, attack, x, y, seed=0, spec={}, cache=cache, device=CPU)
        attacked_images(model, attack, x, y, seed=0, spec={}, cache=cache, device=CPU)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "PGD eps=0.1: attacking 6 images (3 steps, batches of 4)"
    assert lines[1].startswith("PGD eps=0.1: done in ")
    assert lines[2] == "PGD eps=0.1: 6 attacked images from the cache"
