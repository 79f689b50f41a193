"""Knowledge points: time of the projection fits (paper 002) on synthetic features of CIFAR-ResNet size.

Sample projection: N x d features (d = 64, like a CIFAR ResNet's pooled layer3), 10 classes, full
batch; time per round (one mixture update + `steps` Adam steps). Regional importance and regional
projection: N images of K x 8 x 8 maps (the study's default pooling), batches of 64; time per
epoch over the N images. CPU, and CUDA when present. Prints markdown rows for docs/benchmarks.md.

    python benchmarks/kp_projection_speed.py --n 10000 --images 500
"""

from __future__ import annotations

import argparse
import datetime

import torch
from timing import synced_seconds

from explainlab.methods.knowledge_points import RegionalImportance, RegionalProjection, SampleProjection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--channels", type=int, default=64)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    features = torch.randn(args.n, 64, generator=g).relu()
    probs = (features @ torch.randn(64, 10, generator=g)).softmax(1)
    fmap = torch.randn(args.images, args.channels, 8, 8, generator=g).relu()
    logits = fmap.mean((2, 3)) @ torch.randn(args.channels, 10, generator=g)
    sample_g = torch.randn(args.images, 3, generator=g)
    print(f"<!-- {datetime.date.today()}, torch {torch.__version__}, {torch.get_num_threads()} threads -->")
    print("| fit | size | device | time |")
    print("| --- | --- | --- | --- |")
    rounds, epochs = 5, 3
    maps = f"{args.images} x {args.channels} x 8 x 8"
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        t = synced_seconds(
            lambda d=device: SampleProjection(3, rounds=rounds, steps=20, device=d).fit(features, probs), device
        )
        print(
            f"| sample projection, per round (20 Adam steps) | {args.n} x 64 | {device} | {t / rounds * 1e3:.0f} ms |"
        )
        x, z = fmap.to(device), logits.to(device)
        t = synced_seconds(lambda x=x, z=z: RegionalImportance(steps=30).fit_transform(x, z), device)
        print(f"| regional importance, 30 steps per batch | {maps} | {device} | {t:.2f} s |")
        t = synced_seconds(
            lambda x=x, z=z, d=device: RegionalProjection(3, epochs=epochs, device=d).fit(x, z, sample_g), device
        )
        print(f"| regional projection, per epoch | {maps} | {device} | {t / epochs:.2f} s |")


if __name__ == "__main__":
    main()
