"""Library construction and Hebbian links on the MNIST CNN's conv layers: plain patterns vs
factored taps (`FactoredHAPs`) with links summed during construction (`HebbianSums`).

Both routes compute the same cosines (an identity) and the same links (the same pairs, summed in
another order); the script reports how many node indices differ (float32 rounding of cosines
within ~1e-6 of θ can move a decision either way) and the largest relative link difference.

    python benchmarks/library_factored.py --checkpoint .cache/checkpoints/<key>.pt --n 20000 --layer conv1
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import torch

from explainlab.data.mnist import MNISTDataModule
from explainlab.methods.library import FactoredHAPs, HebbianSums, associate_libraries, build_libraries
from explainlab.models import build_model
from explainlab.runner.activations import extract


def mnist_patterns(
    checkpoint: str | None, data_dir: str, n: int, layer: str
) -> tuple[torch.Tensor, FactoredHAPs, torch.Tensor, str]:
    """(plain (N, D), factored, DNN answers (N,), description) of the first n MNIST training images."""
    data = MNISTDataModule(root=data_dir, download=False, limit_train=n, val_size=0, eval_batch_size=1000)
    # as explainlab/conf/model/mnist_cnn; the checkpoint may be an explainlab cache entry or any weights file
    model = build_model("mnist_cnn", mean=[0.1307], std=[0.3081], checkpoint=checkpoint).eval()
    plain = extract(model, data.loader("train"), [layer])
    factored = FactoredHAPs(extract(model, data.loader("train"), [layer], factored=[layer])[layer])
    what = f"MNIST CNN {layer}, {n} x {plain[layer].shape[1]} (factored: {factored.dim})"
    return plain[layer], factored, plain["logits"].argmax(1), what


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", default=None, help="trained MNIST CNN weights (default: random init)")
    parser.add_argument("--data", default=os.environ.get("EXPLAINLAB_DATA", "../shared/data"))
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--layer", default="conv1", choices=["conv1", "conv2"])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.9])
    args = parser.parse_args()
    haps, factored, pred, what = mnist_patterns(args.checkpoint, args.data, args.n, args.layer)
    name = f"CPU {platform.machine()}, {torch.get_num_threads()} threads"

    start = time.perf_counter()
    plain_idx = build_libraries(haps, args.thresholds)
    built_plain = time.perf_counter() - start
    plain_fit = associate_libraries(haps, plain_idx, pred, 10)
    plain_total = time.perf_counter() - start

    start = time.perf_counter()
    sums = HebbianSums(pred, 10)
    fast_idx = build_libraries(factored, args.thresholds, hebbian=sums)
    built_fast = time.perf_counter() - start
    fast_fit = associate_libraries(factored, fast_idx, pred, 10, hebbian=sums)
    fast_total = time.perf_counter() - start

    differ = sum(len(set(plain_idx[t].tolist()) ^ set(fast_idx[t].tolist())) for t in args.thresholds)
    sizes = "/".join(str(len(plain_idx[t])) for t in args.thresholds)
    link_err = max(
        float(((fast_fit[t].links_ - plain_fit[t].links_).abs() / plain_fit[t].links_.abs().clamp_min(1)).max())
        for t in args.thresholds
        if torch.equal(plain_idx[t], fast_idx[t])
    )
    print(
        f"| {datetime.date.today()} | {name} | {what} | {' '.join(f'{t:g}' for t in args.thresholds)} | {sizes} "
        f"| {built_plain:.1f} / {plain_total:.1f} | {built_fast:.1f} / {fast_total:.1f} "
        f"| {plain_total / fast_total:.1f}x | {differ} | {link_err:.1e} | {len(sums.pending)} |"
    )


if __name__ == "__main__":
    main()
