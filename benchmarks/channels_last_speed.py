"""channels_last against the default memory format, per workload, on the device at hand.

Workloads: one training step (forward, backward, SGD with momentum) at batch --batch, and one PGD
step (forward and input gradient, parameters frozen, as the native attack runs) at batch
--pgd-batch. Models: random-weight networks of the project (timing does not depend on weights).
The two formats run interleaved --rounds times, --steps steps each after a warm-up step; the
fastest round of each is kept (the machine may be shared). Prints one markdown row per workload
and model with both times and their ratio; this is what `model.channels_last=auto` and
`attack.channels_last=auto` decide from.

    python benchmarks/channels_last_speed.py --models resnet20 resnet44 mnist_cnn --rounds 3
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timing import synced_seconds

from explainlab.models.build import build_model
from explainlab.models.compute import input_gradients_only, set_memory_format

SHAPES = {"mnist_cnn": (1, 28), "lenet_classic": (1, 28), "small_cnn": (1, 28)}


def workloads(
    name: str, device: str, batch: int, pgd_batch: int
) -> tuple[torch.nn.Module, dict[str, tuple[bool, Callable[[bool], Callable[[], None]]]]]:
    """The model and workload -> (training mode, (channels_last) -> one step)."""
    channels, size = SHAPES.get(name, (3, 32))
    torch.manual_seed(0)
    model = build_model(name, in_channels=channels, image_size=size, mean=(0.5,) * channels, std=(0.25,) * channels)
    model = model.to(device)
    x_train = torch.rand(batch, channels, size, size, device=device)
    y_train = torch.randint(0, 10, (batch,), device=device)
    x_pgd, y_pgd = x_train[:pgd_batch].clone(), y_train[:pgd_batch].clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def train(last: bool) -> Callable[[], None]:
        fmt = torch.channels_last if last else torch.contiguous_format
        x = x_train.contiguous(memory_format=fmt)

        def step() -> None:
            loss = F.cross_entropy(model(x), y_train)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    def pgd(last: bool) -> Callable[[], None]:
        fmt = torch.channels_last if last else torch.contiguous_format
        x = x_pgd.contiguous(memory_format=fmt)

        def step() -> None:
            with input_gradients_only(model):
                delta = torch.zeros_like(x, requires_grad=True)
                loss = F.cross_entropy(model(x + delta), y_pgd, reduction="sum")
                torch.autograd.grad(loss, delta)

        return step

    return model, {f"training step (batch {batch})": (True, train), f"PGD step (batch {pgd_batch})": (False, pgd)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet44", "mnist_cnn"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--pgd-batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"<!-- {datetime.date.today()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.device}, {' '.join(sys.argv)} -->"
    )
    print("| model | workload | contiguous s/step | channels_last s/step | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.models:
        model, loads = workloads(name, args.device, args.batch, args.pgd_batch)
        for workload, (training, make) in loads.items():
            model.train(training)
            best = {False: float("inf"), True: float("inf")}
            steps = {last: make(last) for last in best}
            for last in best:
                set_memory_format(model, last)
                steps[last]()  # warm-up: oneDNN primitives, allocator
            for _ in range(args.rounds):
                for last, step in steps.items():
                    set_memory_format(model, last)  # outside the clock
                    seconds = synced_seconds(lambda s=step: [s() for _ in range(args.steps)], args.device)
                    best[last] = min(best[last], seconds / args.steps)
            print(f"| {name} | {workload} | {best[False]:.3f} | {best[True]:.3f} | {best[False] / best[True]:.2f} |")


if __name__ == "__main__":
    main()
