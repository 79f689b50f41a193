"""Heat maps: time of every attribution method for one batch on one model, and of the AOPC test.

Model: a CIFAR ResNet (default resnet44, random weights: timing does not depend on them), a batch
of --batch 32x32 images; integrated gradients with 32 steps, occlusion with 8x8 windows (stride 8);
AOPC with 16 perturbation steps of 4x4 patches. CPU, and CUDA when present. Markdown rows for
docs/benchmarks.md.

    python benchmarks/heatmap_speed.py --batch 64
"""

from __future__ import annotations

import argparse
import datetime

import torch
from timing import synced_seconds

from explainlab.methods.heatmaps import perturbation_curve
from explainlab.methods.heatmaps.attribution import METHODS, explain, prepare_for_attribution, to_heatmap
from explainlab.methods.heatmaps.lrp import canonical_copy, inner_input
from explainlab.models.build import IMAGENET_MEAN, IMAGENET_STD, build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet44")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    print(f"<!-- {datetime.date.today()}, torch {torch.__version__}, {torch.get_num_threads()} threads -->")
    print(f"| step ({args.model}, batch {args.batch} x 3x32x32) | device | seconds |")
    print("| --- | --- | --- |")
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        rows(args.model, args.batch, device)


def rows(name: str, batch: int, device: str) -> None:
    """Print one row per method, the total, and the AOPC test, for one device."""
    torch.manual_seed(0)
    model = build_model(name, in_channels=3, image_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD).eval().to(device)
    x = torch.rand(batch, 3, 32, 32, device=device)
    target = model(x).argmax(1)
    prepared = prepare_for_attribution(model)
    canonical = None

    def canonicalise() -> None:
        nonlocal canonical
        canonical = canonical_copy(model, inner_input(model, x))

    seconds = synced_seconds(canonicalise, device)
    print(f"| LRP canonical copy (fx trace, BN fold, Sum; once per model) | {device} | {seconds:.2f} |")
    total, maps = seconds, {}

    def attribute(method: str) -> None:
        attr = explain(model, x, target, method, prepared=prepared, canonical=canonical, ig_steps=32,
                       occlusion_window=8, occlusion_stride=8)  # fmt: skip
        maps[method] = to_heatmap(attr, method)

    for method in METHODS:
        seconds = synced_seconds(lambda m=method: attribute(m), device)
        total += seconds
        print(f"| {method} | {device} | {seconds:.2f} |")
    print(f"| all {len(METHODS)} methods | {device} | {total:.2f} |")
    seconds = synced_seconds(lambda: perturbation_curve(model, x, maps["gradient"], target, steps=16, patch=4), device)
    print(f"| AOPC, 16 steps (one method) | {device} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
