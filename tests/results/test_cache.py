"""The cache-entry store: checked reads, damaged entries moved aside, locks, orphans, permissions."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from explainlab.results.cache import EntryRejected, EntryStore, check_described, content_hash, describe
from explainlab.results.io import atomic_write_text, remove_orphans


def test_unreadable_entry_is_named_moved_aside_and_reported_absent(tmp_path: Path) -> None:
    store = EntryStore(tmp_path, "test cache")
    store.path("k").write_bytes(b"\x80\x02 not a torch file")
    with pytest.warns(RuntimeWarning, match=r"test cache entry .*k\.pt is unusable \(unreadable"):
        assert store.load("k") is None
    assert not store.path("k").exists() and len(list(tmp_path.glob("k.pt.corrupt-*"))) == 1


def test_truncated_entry_is_moved_aside(tmp_path: Path) -> None:
    store = EntryStore(tmp_path, "test cache")
    path = store.save("k", {"values": torch.arange(1000.0)})
    path.write_bytes(path.read_bytes()[:300])
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert store.load("k") is None


def test_content_check_catches_changed_values_shape_and_dtype() -> None:
    values = torch.randn(50, 7)
    stored = describe(values)
    check_described("v", values.clone(), stored)
    changed = values.clone()
    changed[3, 2] += 1
    for other, why in ((changed, "hash"), (values[:49], "stored as"), (values.double(), "stored as")):
        with pytest.raises(EntryRejected, match=why):
            check_described("v", other, stored)
    # Large tensors are sampled: the hash costs O(65k) elements, not O(n).
    big = torch.zeros(1 << 20)
    assert content_hash(big) != content_hash(big.view(1024, 1024))
    huge = torch.zeros((1 << 25) + 3, dtype=torch.uint8)  # beyond float32's exact integers
    before = content_hash(huge)
    huge[-1] = 1  # the last element is always sampled
    assert content_hash(huge) != before


def test_rejected_entry_is_moved_aside(tmp_path: Path) -> None:
    store = EntryStore(tmp_path, "test cache")
    store.save("k", {"spec": "other"})

    def check(entry: dict) -> None:
        if entry["spec"] != "mine":
            raise EntryRejected("written for another key")

    with pytest.warns(RuntimeWarning, match="written for another key"):
        assert store.load("k", check) is None
    store.save("k", {"spec": "mine"})
    assert store.load("k", check) == {"spec": "mine"}


def test_orphan_temp_files_are_removed_but_young_ones_kept(tmp_path: Path) -> None:
    old, young = tmp_path / ".a.pt.x1.tmp", tmp_path / ".b.pt.x2.tmp"
    for path in (old, young):
        path.write_bytes(b"half")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert remove_orphans(tmp_path) == [old]
    assert young.exists()


def test_atomic_writes_honour_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        assert (atomic_write_text(tmp_path / "a.txt", "x").stat().st_mode & 0o777) == 0o644
        os.umask(0o002)
        assert (atomic_write_text(tmp_path / "b.txt", "x").stat().st_mode & 0o777) == 0o664
        assert (EntryStore(tmp_path / "s", "s").save("k", {}).stat().st_mode & 0o777) == 0o664
    finally:
        os.umask(previous)


_HOLD = """
import sys, time
from explainlab.results.cache import EntryStore
store = EntryStore(sys.argv[1], "test cache")
with store.lock("k"):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    store.save("k", {"by": "first"})
"""


def test_a_second_process_waits_for_the_lock_then_finds_the_entry(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path), "1.5"], stdout=subprocess.PIPE, env=env,
                             text=True)  # fmt: skip
    assert first.stdout.readline().strip() == "locked"
    store = EntryStore(tmp_path, "test cache")
    start = time.perf_counter()
    with store.lock("k"):
        waited = time.perf_counter() - start
        entry = store.load("k")
    first.wait(timeout=60)
    assert waited > 0.5 and entry == {"by": "first"}
    with store.lock("k"), store.lock("k"):  # re-entrant within a process
        pass
