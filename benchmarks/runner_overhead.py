"""Training through the Lightning runner beside a plain torch loop: same model, data, optimizer,
augmentation and device, one run.

The runner is what `explainlab method=train` builds (`runner.train.build_module` and the configured
`pl.Trainer`, with its CSV logger and, with --progress, its progress bar); the plain loop is the
shortest correct loop a user would write: the same DataLoader, batched crop+flip, SGD step, no
logging, in the runner's memory layout and deterministic mode (`trainer.deterministic`), so both do
the same arithmetic. Both start from the same seed and initial weights. Epoch times exclude the first epoch
(warm-up); both are measured --rounds times interleaved and the fastest epoch of each is kept (the
machine may be shared). Prints one markdown row per loop and the ratio.

    python benchmarks/runner_overhead.py --model resnet20 --images 2048 --epochs 3 --rounds 2
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from explainlab.config import compose_config
from explainlab.data.augment import random_crop_flip
from explainlab.models.compute import resolve_channels_last, set_memory_format
from explainlab.runner.classifier import TRAIN_CHANNELS_LAST_ON_CPU
from explainlab.runner.context import RunContext
from explainlab.runner.training import build_module


class EpochTimer(Callback):
    """Wall seconds of every training epoch."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def context(args: argparse.Namespace, out: str) -> RunContext:
    overrides = [
        "dataset=synthetic",
        f"dataset.n_train={args.images}",
        "dataset.n_test=64",
        "dataset.num_classes=10",
        "dataset.in_channels=3",
        "dataset.image_size=32",
        "dataset.val_size=0",
        f"model={args.model}",
        "recipe=cifar_resnet",
        f"recipe.epochs={args.epochs}",
        f"recipe.batch_size={args.batch}",
        "trainer=cpu",
        f"progress={str(args.progress).lower()}",
        *args.overrides,
    ]
    return RunContext(compose_config(overrides, output_dir=out), output_dir=out)


def deterministic_mode(ctx: RunContext) -> None:
    """The runner's `trainer.deterministic` for the plain loop too (Lightning sets it process-wide and
    never resets it, so both loops set it before they run)."""
    setting = ctx.cfg.trainer.get("deterministic")
    torch.use_deterministic_algorithms(bool(setting), warn_only=setting == "warn")


def runner_epochs(args: argparse.Namespace, out: str) -> list[float]:
    ctx = context(args, out)
    pl.seed_everything(0, workers=True)
    timer = EpochTimer()
    trainer = ctx.trainer(callbacks=[timer], enable_checkpointing=False)
    deterministic_mode(ctx)
    trainer.fit(build_module(ctx), datamodule=ctx.datamodule)
    return timer.seconds


def uses_channels_last(ctx: RunContext) -> bool:
    """Whether the runner trains this model channels-last on the CPU (model.channels_last, 'auto' resolved)."""
    setting = ctx.cfg.model.get("channels_last", False)
    return resolve_channels_last(
        setting, "cpu", ctx.model, key="model.channels_last", auto_on_cpu=TRAIN_CHANNELS_LAST_ON_CPU
    )


def plain_epochs(args: argparse.Namespace, out: str) -> list[float]:
    ctx = context(args, out)
    pl.seed_everything(0, workers=True)
    model, recipe, data = ctx.model, ctx.cfg.recipe, ctx.datamodule
    channels_last = uses_channels_last(ctx)  # the layout the runner picks, so both do the same arithmetic
    set_memory_format(model, channels_last)
    deterministic_mode(ctx)  # the same kernels as the runner's (trainer.deterministic)
    data.setup("fit")
    loader = data.train_dataloader()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.optimizer.lr, momentum=recipe.optimizer.momentum,
        weight_decay=recipe.optimizer.weight_decay,
    )  # fmt: skip
    model.train()
    seconds = []
    for epoch in range(args.epochs):
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        start = time.perf_counter()
        for x, y in loader:
            x = random_crop_flip(x, recipe.augment.crop_padding, recipe.augment.hflip)
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("overrides", nargs="*", help="extra config overrides for the runner (and the plain loop's data)")
    args = parser.parse_args()
    best = {"plain torch loop": float("inf"), "explainlab runner (Lightning)": float("inf")}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.rounds):
            best["plain torch loop"] = min(best["plain torch loop"], *plain_epochs(args, out)[1:])
            best["explainlab runner (Lightning)"] = min(
                best["explainlab runner (Lightning)"], *runner_epochs(args, out)[1:]
            )
    print(
        f"<!-- {datetime.date.today()}, torch {torch.__version__}, lightning {pl.__version__}, "
        f"{torch.get_num_threads()} threads, {' '.join(sys.argv)} -->"
    )
    with tempfile.TemporaryDirectory() as out:
        probe = context(args, out)
        layout = "channels_last" if uses_channels_last(probe) else "contiguous"
        layout += f", deterministic={probe.cfg.trainer.get('deterministic')}"
    print(f"| loop ({args.model}, {args.images} images/epoch, batch {args.batch}, cpu, {layout}) | s/epoch | x plain |")
    print("| --- | --- | --- |")
    plain = best["plain torch loop"]
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} | {seconds / plain:.3f} |")


if __name__ == "__main__":
    main()
