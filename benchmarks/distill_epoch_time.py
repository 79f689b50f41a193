"""Time of one CIFAR-10 epoch of a feature-distilled ResNet20 student (paper 002, Fig. 9), from a few
batches, to plan the distillation run.

Each training step: the teacher's forward pass (akamaster ResNet44, eval mode, no gradients) for the
mimicked feature, the student's forward/backward with `FeatureDistillationLoss` (feature regression;
cross-entropy on the head only through `MimickedFeature(detach_downstream=True)`), SGD. Variants:
`online` (teacher run every step, augmentation possible), `cached` (teacher features read from memory,
i.e. computed once per augmentation), and `teacher` (teacher forward alone: the cost of caching).
Synthetic CIFAR-shaped batches (the cost does not depend on the pixels); the first `--warmup` steps
are not timed. Prints a markdown row per variant.

    python benchmarks/distill_epoch_time.py --batches 20
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import torch

from explainlab.data.augment import random_crop_flip
from explainlab.methods.knowledge_points import FeatureDistillationLoss, MimickedFeature
from explainlab.models import build_model
from explainlab.models.layers import ActivationRecorder

CIFAR_TRAIN = 50_000
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", default="resnet20")
    parser.add_argument("--teacher", default="resnet44")
    parser.add_argument("--layer", default="layer3")
    parser.add_argument("--pool", action="store_true", help="mimic the pooled (penultimate) feature")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    student = build_model(args.student, in_channels=3, image_size=32, mean=MEAN, std=STD)
    teacher = build_model(args.teacher, in_channels=3, image_size=32, mean=MEAN, std=STD).eval()  # weights: cost only
    loss_fn = FeatureDistillationLoss(ce_weight=1.0, pool=args.pool)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x_all = torch.rand(args.batch * 4, 3, 32, 32)
    y_all = torch.randint(0, 10, (args.batch * 4,))

    def teacher_feature(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), ActivationRecorder(teacher, [args.layer]) as rec:
            teacher(x)
        return rec.activations[args.layer]

    cached = teacher_feature(x_all[: args.batch])

    def step(variant: str, i: int) -> None:
        sl = slice((i % 4) * args.batch, (i % 4 + 1) * args.batch)
        x, y = random_crop_flip(x_all[sl], padding=4, hflip=True), y_all[sl]
        if variant == "teacher":
            teacher_feature(x)
            return
        target = teacher_feature(x) if variant == "online" else cached
        with MimickedFeature(student, args.layer, detach_downstream=True) as tap:
            logits = student(x)
        loss = loss_fn(tap.feature, target, logits, y)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    steps_per_epoch = -(-CIFAR_TRAIN // args.batch)
    cpu = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# {datetime.date.today()} torch {torch.__version__} CPU ({cpu}); {args.batches} timed steps of "
          f"{args.batch} images after {args.warmup} warm-up steps; epoch = {steps_per_epoch} steps")  # fmt: skip
    print("| variant | s / step (median) | s / epoch (extrapolated) |")
    print("| --- | --- | --- |")
    student.train()
    for variant in ("online", "cached", "teacher"):
        for i in range(args.warmup):
            step(variant, i)
        seconds = []
        for i in range(args.batches):
            start = time.perf_counter()
            step(variant, i)
            seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds)
        print(f"| {variant} | {median:.3f} | {median * steps_per_epoch:.0f} |")


if __name__ == "__main__":
    main()
