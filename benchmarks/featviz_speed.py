"""Feature visualization: optimisation steps per second for one image and for a batch of 8.

ResNet20 (CIFAR, 32x32) and torchvision ResNet18 at 128x128, random weights (speed does not depend
on them); Fourier parameterisation, colour decorrelation, the paper's transformation set (pad,
jitter, scales, rotation, jitter). CPU, and CUDA when present. Markdown rows for docs/benchmarks.md.

    python benchmarks/featviz_speed.py --steps 20
"""

from __future__ import annotations

import argparse
import datetime

import torch

from explainlab.methods.featviz import channel, robustness_transforms, visualize
from explainlab.models.build import IMAGENET_MEAN, IMAGENET_STD, build_model

CASES = (("resnet20", 32, "layer3"), ("resnet18", 128, "layer4"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(f"<!-- {datetime.date.today()}, torch {torch.__version__}, {torch.get_num_threads()} threads -->")
    print("| model | image | batch | device | steps/s |")
    print("| --- | --- | --- | --- | --- |")
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        for name, size, layer in CASES:
            model = build_model(name, in_channels=3, image_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
            transforms = robustness_transforms(pad=size // 8, jitter=size // 8, scales=(1, 0.975, 1.025, 0.95, 1.05),
                                               degrees=5, jitter2=size // 16)  # fmt: skip
            for batch in (1, 8):
                kwargs = dict(shape=(batch, 3, size, size), transforms=transforms, device=device)
                visualize(model, channel(layer, 0), steps=2, **kwargs)  # warm-up
                result = visualize(model, channel(layer, 0), steps=args.steps, **kwargs)
                print(f"| {name} | {size}x{size} | {batch} | {device} | {args.steps / result.seconds:.1f} |")


if __name__ == "__main__":
    main()
