"""The one activation extractor (`runner.activations.extract`: forward hooks, torch.inference_mode)
beside torchvision's `create_feature_extractor` (an fx-traced copy that returns the layers) and a
bare forward pass, on a CIFAR ResNet20 (random weights) and random 32x32 images, CPU.

Two uses: flattened patterns of layer1-3 (library networks) and raw maps of layer1-3 average-pooled
to 8x8 (knowledge points). Run against an older tree (PYTHONPATH=<old>/src) it times the extractors
that tree had (`runner.features.extract`, `runner.knowledge_points.layer_outputs`) instead.

    python benchmarks/activation_extraction.py --images 2048 --batch 256 --repeats 3
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics

import torch
import torch.nn.functional as F
from timing import synced_seconds
from torchvision.models.feature_extraction import create_feature_extractor

from explainlab.models import build_model
from explainlab.models.layers import unwrap

LAYERS = ["layer1", "layer2", "layer3"]


def extractors() -> tuple[str, object, object]:
    """(which tree, flattened extractor, pooled-maps extractor) of the explainlab on the path."""
    try:
        from explainlab.runner.activations import extract

        def pooled(model, batches, layers, max_side):
            return extract(model, batches, layers, flatten=False, max_side=max_side)

        return "one extractor (runner.activations.extract)", extract, pooled
    except ImportError:  # a tree from before the single extractor
        from explainlab.runner.features import extract

        from explainlab.runner.knowledge_points import layer_outputs

        def pooled(model, batches, layers, max_side):
            return layer_outputs(model, batches, layers, torch.device("cpu"), max_side)

        return "before (runner.features.extract, knowledge_points.layer_outputs)", extract, pooled


def torchvision_features(model, extractor, batches, layers, max_side=None):
    """The outputs of `layers` from `extractor` (create_feature_extractor of the model's net, made
    once per model as a user would): flattened (max_side None) or maps pooled to at most max_side."""
    out = {n: [] for n in layers}
    with torch.inference_mode():
        for x, _ in batches:
            feats = extractor(model.normalize(x))
            for n in layers:
                a = feats[n]
                if max_side is None:
                    a = a.flatten(1)
                elif max(a.shape[-2:]) > max_side:
                    a = F.adaptive_avg_pool2d(a, (min(a.shape[-2], max_side), min(a.shape[-1], max_side)))
                out[n].append(a)
    return {n: torch.cat(v) for n, v in out.items()}


def forward_only(model, batches):
    with torch.inference_mode():
        return [model(x) for x, _ in batches]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model(
        "resnet20", num_classes=10, in_channels=3, image_size=32, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26)
    ).eval()
    x = torch.rand(args.images, 3, 32, 32)
    batches = [(x[i : i + args.batch], torch.zeros(len(x[i : i + args.batch]), dtype=torch.long))
               for i in range(0, len(x), args.batch)]  # fmt: skip
    tree, flat, pooled = extractors()
    ours_flat, ours_pooled = flat(model, batches, LAYERS), pooled(model, batches, LAYERS, 8)
    tv = create_feature_extractor(unwrap(model).eval(), return_nodes={n: n for n in LAYERS})
    tv_flat, tv_pooled = (
        torchvision_features(model, tv, batches, LAYERS),
        torchvision_features(model, tv, batches, LAYERS, 8),
    )
    for n in LAYERS:  # the same numbers
        assert torch.allclose(ours_flat[n], tv_flat[n], atol=1e-5) and torch.allclose(ours_pooled[n], tv_pooled[n])
    cases = {
        f"{tree}: flattened layer1-3": lambda: flat(model, batches, LAYERS),
        f"{tree}: maps pooled to 8x8": lambda: pooled(model, batches, LAYERS, 8),
        "torchvision create_feature_extractor: flattened layer1-3": lambda: torchvision_features(
            model, tv, batches, LAYERS
        ),
        "torchvision create_feature_extractor: maps pooled to 8x8": lambda: torchvision_features(
            model, tv, batches, LAYERS, 8
        ),
        "forward pass only (lower bound)": lambda: forward_only(model, batches),
    }
    print(f"{datetime.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}; ResNet20, {args.images} images of "
          f"32x32 in batches of {args.batch}, median of {args.repeats}")  # fmt: skip
    print("| extractor | seconds | images/s |\n| --- | --- | --- |")
    for name, fn in cases.items():
        seconds = statistics.median(synced_seconds(fn, "cpu") for _ in range(args.repeats))
        print(f"| {name} | {seconds:.2f} | {args.images / seconds:.0f} |")


if __name__ == "__main__":
    main()
