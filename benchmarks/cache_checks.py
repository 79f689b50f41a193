"""What the cache's safety costs: reading an entry through the checked stores (key, shape, dtype,
sampled content hash, NaN scan; issue 14) beside a bare `torch.load(weights_only=True)` of the same
file, and taking an uncontended per-key file lock. Median of `--repeats` warm reads.

    python benchmarks/cache_checks.py --rows 10000 --cols 4096 --repeats 7
"""

from __future__ import annotations

import argparse
import datetime
import tempfile

import torch

from explainlab.models import build_model
from explainlab.runner.checkpoint_cache import CheckpointCache
from explainlab.runner.activations import FeatureCache
from timing import median_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10000, help="images in the activation entry")
    parser.add_argument("--cols", type=int, default=4096, help="pattern length of the activation entry")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # A ResNet44 checkpoint entry (0.66 M parameters).
        checkpoints = CheckpointCache(tmp)
        spec = {"model": {"name": "resnet44"}, "seed": 0}
        state = build_model("resnet44").net.state_dict()
        path = checkpoints.put(spec, state, {"test/acc": 0.9})
        plain = median_seconds(lambda: torch.load(path, map_location="cpu", weights_only=True), args.repeats)
        checked = median_seconds(lambda: checkpoints.get(spec), args.repeats)
        rows.append(("checkpoint entry, ResNet44", path.stat().st_size, plain, checked))
        # An activation entry, read memory-mapped as the studies do.
        haps = FeatureCache(tmp)
        hap_spec = {"model": "f" * 16, "split": "train", "layer": "conv2"}
        path = haps.put(hap_spec, torch.randn(args.rows, args.cols))
        plain = median_seconds(
            lambda: torch.load(path, map_location="cpu", weights_only=True, mmap=True), args.repeats
        )
        checked = median_seconds(lambda: haps.get(hap_spec), args.repeats)
        rows.append((f"activation entry, {args.rows}x{args.cols} float32 (mmap)", path.stat().st_size, plain, checked))

        def lock_once() -> None:
            with checkpoints.lock(spec):
                pass

        lock = median_seconds(lock_once, args.repeats)
    print(f"date {datetime.date.today()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| entry | size (MB) | bare torch.load (ms) | checked store read (ms) | added (ms) |")
    print("| --- | --- | --- | --- | --- |")
    for name, size, plain, checked in rows:
        print(f"| {name} | {size / 1e6:.1f} | {plain * 1e3:.2f} | {checked * 1e3:.2f} | {(checked - plain) * 1e3:.2f} |")
    print(f"uncontended per-key file lock (acquire + release): {lock * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
