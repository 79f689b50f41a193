"""Feature chirality: S (with and without the flip) for every flippable conv layer of a model.

Times `ChiralityProfile.fit` (two Gram products per layer) on the CPU and, when present, CUDA;
median of --repeats after one warm-up. Also times the paper's double loop (B² cosines in Python)
on one 64-kernel layer, for scale. Prints markdown rows for docs/benchmarks.md.

    python benchmarks/chirality_speed.py --models resnet152 vgg19 alexnet
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import torch
import torchvision
from timing import synced_seconds

from explainlab.methods.chirality import ChiralityProfile, flippable_convs, kernel_similarity


def timed(fn, device: str, repeats: int) -> float:
    """Median of `repeats` calls after one warm-up."""
    fn()
    return statistics.median(synced_seconds(fn, device) for _ in range(repeats))


def double_loop(weight: torch.Tensor) -> float:
    flat, mirrored = weight.flatten(1), weight.flip(-1).flatten(1)
    total = 0.0
    for j in range(len(flat)):
        for jp in range(len(flat)):
            total += abs(float(torch.nn.functional.cosine_similarity(flat[j], mirrored[jp], dim=0)))
    return total / len(flat) ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet152", "vgg19", "alexnet"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    stamp = f"{datetime.date.today()}, torch {torch.__version__}, {platform.processor() or platform.machine()}, " \
            f"{torch.get_num_threads()} threads"  # fmt: skip
    if torch.cuda.is_available():
        stamp += f", {torch.cuda.get_device_name()}"
    print(f"<!-- {stamp} -->")
    print("| model | layers | kernels | device | S + no-flip S, all layers (s) |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.models:
        torch.manual_seed(0)
        net = torchvision.models.get_model(name)
        convs = flippable_convs(net)
        kernels = sum(c.out_channels for c in convs.values())
        for device in devices:
            weights = {n: c.weight.detach().to(device) for n, c in convs.items()}
            seconds = timed(lambda w=weights, d=device: ChiralityProfile(device=d).fit_weights(w), device, args.repeats)
            print(f"| {name} | {len(convs)} | {kernels} | {device} | {seconds:.3f} |")
    weight = flippable_convs(torchvision.models.resnet18())["layer1.0.conv1"].weight.detach()
    start = time.perf_counter()
    reference = double_loop(weight)
    loop_s = time.perf_counter() - start
    fast_s = timed(lambda: kernel_similarity(weight), "cpu", args.repeats)
    assert abs(reference - kernel_similarity(weight)[0].item()) < 1e-5
    print(
        f"\nOne 64-kernel 64x3x3 layer on the CPU: double loop {loop_s:.2f} s, Gram product {fast_s * 1e3:.2f} ms "
        f"({loop_s / fast_s:.0f}x)."
    )


if __name__ == "__main__":
    main()
