"""Training throughput of a CIFAR ResNet through the Lightning runner (the path `method=train` uses).

Synthetic CIFAR-shaped data (3x32x32, 10 classes) so that it needs no download; the per-epoch time
excludes the first epoch (cuDNN autotuning, allocator warm-up). Prints one markdown table row for
docs/benchmarks.md.

    python benchmarks/train_throughput.py --device cuda --precision bf16-mixed --channels-last --on-device --batch 512
    python benchmarks/train_throughput.py --device cpu --images 2048 --epochs 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from explainlab.data import SyntheticDataModule
from explainlab.models import build_model
from explainlab.runner.classifier import ClassifierModule


class EpochTimer(Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def _sync(self, trainer: pl.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sync(trainer)
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sync(trainer)
        self.seconds.append(time.perf_counter() - self.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet44")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--on-device", action="store_true", help="hold the data on the GPU (no DataLoader)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--images", type=int, default=50000, help="images per epoch (CIFAR-10: 50,000)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()

    pl.seed_everything(0)
    data = SyntheticDataModule(
        n_train=args.images,
        n_test=16,
        num_classes=10,
        in_channels=3,
        image_size=32,
        batch_size=args.batch,
        val_size=0,
        on_device=args.on_device,
        num_workers=args.workers,
    )
    model = build_model(
        args.model,
        in_channels=3,
        image_size=32,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        channels_last=args.channels_last,
    )
    module = ClassifierModule(
        model,
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4),
        num_classes=10,
        crop_padding=4,
        hflip=True,
        channels_last=args.channels_last,
    )
    timer = EpochTimer()
    trainer = pl.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        precision=args.precision,
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
        benchmark=args.device == "cuda",
    )
    trainer.fit(module, datamodule=data)
    steady = timer.seconds[1:] or timer.seconds
    epoch_s = statistics.median(steady)
    device_name = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"CPU ({platform.processor() or 'x86_64'}, {torch.get_num_threads()} threads)"
    )
    result = {
        "model": args.model,
        "device": device_name,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "on_device": args.on_device,
        "batch": args.batch,
        "images": args.images,
        "epoch_s": epoch_s,
        "img_per_s": args.images / epoch_s,
        "cifar10_epoch_s": 50000 / (args.images / epoch_s),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    print(
        f"| {result['date']} | {device_name} | {args.model} | {args.precision} | {args.channels_last} | "
        f"{args.on_device} | {args.batch} | {result['img_per_s']:.0f} | {result['cifar10_epoch_s']:.2f} |"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
