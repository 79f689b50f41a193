"""Library construction: the exact batched builder vs a one-sample-at-a-time loop on the same device.

HAPs: ResNet44 (akamaster) layer1 outputs of the first N CIFAR-10 training images when the shared
data and models are present (--source resnet44), the MNIST CNN's conv1 (--source mnist_conv1, with
--checkpoint for trained weights), else clustered random patterns (--source synthetic). Both
methods must return the same node indices (checked). For mnist_conv1 the batched builder is also
timed on the factored tap (`FactoredHAPs`, 785 instead of 21,632 dimensions); its indices may
differ from the plain ones only where float32 rounding moves a cosine across θ (counted).
Prints markdown rows for docs/benchmarks.md.

    python benchmarks/library_construction.py --source resnet44 --n 10000 --thresholds 0.7 0.75 0.8
    python benchmarks/library_construction.py --source mnist_conv1 --checkpoint CKPT --n 10000
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import torch

from explainlab.methods.library import FactoredHAPs, build_libraries, normalize_haps


def one_sample_loop(haps: torch.Tensor, threshold: float, device: torch.device) -> list[int]:
    """The paper's definition as the original code ran it: one sample at a time."""
    nodes = torch.empty(1024, haps[0].numel(), device=device)
    size, index = 0, []
    for k in range(len(haps)):
        x = normalize_haps(haps[k : k + 1].to(device))[0]
        if size == 0 or float((nodes[:size] @ x).max()) < threshold:
            if size == len(nodes):
                nodes = torch.cat([nodes, torch.empty_like(nodes)])
            nodes[size] = x
            size += 1
            index.append(k)
    return index


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def load_haps(source: str, n: int, checkpoint: str | None) -> tuple[torch.Tensor, str, FactoredHAPs | None]:
    if source == "mnist_conv1":
        from library_factored import mnist_patterns

        data_dir = os.environ.get(
            "EXPLAINLAB_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
        )
        haps, factored, _, what = mnist_patterns(checkpoint, data_dir, n, "conv1")
        return haps, what, factored
    if source == "resnet44":
        from explainlab.data import CIFAR10DataModule
        from explainlab.models import pretrained_cifar_resnet
        from explainlab.runner.activations import extract

        shared = os.environ.get("EXPLAINLAB_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
        model = pretrained_cifar_resnet("resnet44", models_dir=os.path.join(shared, "models", "cifar10"))
        data = CIFAR10DataModule(
            root=os.path.join(shared, "data"),
            download=False,
            verify=False,
            val_size=0,
            limit_train=n,
            eval_batch_size=1000,
        )
        haps = extract(model, data.loader("train"), ["layer1"], with_logits=False)["layer1"]
        return haps, f"ResNet44 layer1, {n} x {haps.shape[1]}", None
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(50, 4096, generator=g)
    haps = centers[torch.randint(0, 50, (n,), generator=g)] + 1.5 * torch.randn(n, 4096, generator=g)
    return haps, f"synthetic clusters, {n} x 4096", None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", default="resnet44", choices=["resnet44", "mnist_conv1", "synthetic"])
    parser.add_argument("--checkpoint", default=None, help="mnist_conv1: trained MNIST CNN weights")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.7, 0.75, 0.8])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--block", type=int, default=4096)
    args = parser.parse_args()
    device = torch.device(args.device)
    haps, what, factored = load_haps(args.source, args.n, args.checkpoint)
    haps = haps.to(device)
    name = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"CPU {platform.machine()}, {torch.get_num_threads()} threads"
    )
    today = datetime.date.today()
    sync(device)
    start = time.perf_counter()
    together = build_libraries(haps, args.thresholds, block_size=args.block)
    sync(device)
    one_pass = time.perf_counter() - start
    for t in args.thresholds:
        sync(device)
        start = time.perf_counter()
        batched = build_libraries(haps, [t], block_size=args.block)[t]
        sync(device)
        fast = time.perf_counter() - start
        start = time.perf_counter()
        slow_index = one_sample_loop(haps, t, device)
        sync(device)
        slow = time.perf_counter() - start
        assert batched.tolist() == slow_index == together[t].tolist(), "methods disagree"
        row = f"| {today} | {name} | {what} | {t:g} | {len(batched)} | {slow:.2f} | {fast:.2f} | {slow / fast:.0f}x |"
        if factored is not None:
            sync(device)
            start = time.perf_counter()
            short = build_libraries(factored.to(device), [t], block_size=args.block)[t]
            sync(device)
            quick = time.perf_counter() - start
            differ = len(set(short.tolist()) ^ set(slow_index))
            row += f" factored: {quick:.2f} s, {slow / quick:.0f}x, {differ} indices differ |"
        print(row)
    print(f"| {today} | {name} | {what} | all of {args.thresholds} in one pass | - | - | {one_pass:.2f} | - |")


if __name__ == "__main__":
    main()
