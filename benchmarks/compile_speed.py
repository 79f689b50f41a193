"""torch.compile against eager mode, per workload, on the device at hand: compile time and steady state.

Workloads as in channels_last_speed.py: one training step (forward, backward, SGD with momentum)
at batch --batch, and one PGD step (forward and input gradient, parameters frozen, model in eval
mode, as the native attack runs) at batch --pgd-batch; random-weight models of the project. The
compiled model is `torch.compile(model)` (inductor, default mode) on a copy with the same weights.
Compile time is the first compiled call's time less one eager step (what a user waits for once per
process and input shape); steady state is the fastest of --rounds rounds of --steps steps, eager
and compiled interleaved, after that first call. Prints one markdown row per model and workload:
eager s/step, compiled s/step, speed-up, compile seconds, and the largest difference of the
step's output (loss gradient or updated weights) between the two, as a check that both compute
the same thing.

    python benchmarks/compile_speed.py --models resnet20 --steps 3 --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import datetime
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timing import synced_seconds

from explainlab.models.build import build_model
from explainlab.models.compute import input_gradients_only

SHAPES = {"mnist_cnn": (1, 28), "lenet_classic": (1, 28), "small_cnn": (1, 28)}


def make_steps(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, training: bool
) -> tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
    """(eager step, compiled step) of the workload on two copies of `model` with equal weights;
    each returns what the step computed (the input gradient, or the first conv's updated weight)."""
    eager = copy.deepcopy(model).train(training)
    compiled_model = copy.deepcopy(model).train(training)
    compiled = torch.compile(compiled_model)

    def step_for(net: torch.nn.Module, module: torch.nn.Module) -> Callable[[], torch.Tensor]:
        if training:
            optimizer = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9)
            first = next(module.parameters())

            def train_step() -> torch.Tensor:
                loss = F.cross_entropy(net(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                return first

            return train_step

        def pgd_step() -> torch.Tensor:
            with input_gradients_only(module):
                delta = torch.zeros_like(x, requires_grad=True)
                loss = F.cross_entropy(net(x + delta), y, reduction="sum")
                return torch.autograd.grad(loss, delta)[0]

        return pgd_step

    return step_for(eager, eager), step_for(compiled, compiled_model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20"])
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
    print("| model | workload | eager s/step | compiled s/step | speed-up | compile s | max difference |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        channels, size = SHAPES.get(name, (3, 32))
        torch.manual_seed(0)
        model = build_model(name, in_channels=channels, image_size=size, mean=(0.5,) * channels, std=(0.25,) * channels)
        model = model.to(args.device)
        x = torch.rand(max(args.batch, args.pgd_batch), channels, size, size, device=args.device)
        y = torch.randint(0, 10, (len(x),), device=args.device)
        for workload, training, n in (("training step", True, args.batch), ("PGD step", False, args.pgd_batch)):
            torch._dynamo.reset()
            eager, compiled = make_steps(model, x[:n], y[:n], training)
            reference = eager().clone()  # the first step of each, from the same weights
            start = time.perf_counter()
            difference = (compiled() - reference).abs().max().item()  # compiles here
            first = time.perf_counter() - start
            eager_s = synced_seconds(eager, args.device)
            compiled()  # a recompilation, if any (e.g. the optimizer's state appearing), before the clock
            best = {"eager": eager_s, "compiled": float("inf")}
            for _ in range(args.rounds):
                for key, step in (("eager", eager), ("compiled", compiled)):
                    seconds = synced_seconds(lambda s=step: [s() for _ in range(args.steps)], args.device)
                    best[key] = min(best[key], seconds / args.steps)
            print(
                f"| {name} | {workload} (batch {n}) | {best['eager']:.3f} | {best['compiled']:.3f} | "
                f"{best['eager'] / best['compiled']:.2f} | {first - eager_s:.1f} | {difference:.1e} |"
            )


if __name__ == "__main__":
    main()
