"""L-inf PGD: the native backend beside advertorch 0.2.3 and torchattacks 3.5.1, same images, one run.

akamaster's pretrained CIFAR ResNets (read from --models-dir, default ../shared/models/cifar10),
the first --images CIFAR-10 test images (--data-root, default ../shared/data), eps 8/255, step
2/255, --steps iterations, no random start, cross-entropy summed over the batch (advertorch's
default; torchattacks averages, which gives the same signs). The tools run interleaved, --rounds
times each after a warm-up call, and every row reports the fastest round (the machine may be shared). Prints one
markdown row per tool with seconds, its time over native's, robust accuracy and whether its images
equal advertorch's; also the native backend channels-last, with batch norms folded into the
convolutions (attack.fold_bn, the folding inside the timed call), and on CUDA (--device cuda) with
bf16 autocast.

    python benchmarks/pgd_speed.py --models resnet20 resnet44 --images 128 --steps 10 --rounds 3
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from timing import synced_seconds

from explainlab.attacks.pgd import LinfPGD
from explainlab.data.cifar10 import read_cifar10_batch
from explainlab.models.build import pretrained_cifar_resnet

HERE = Path(__file__).resolve().parent


def cifar_test_images(root: Path, n: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n CIFAR-10 test images in [0, 1] and their labels."""
    images, labels = read_cifar10_batch(root / "cifar-10-batches-py" / "test_batch")
    x = torch.from_numpy(images[:n]).float().div(255)
    return x.to(device), torch.from_numpy(labels[:n]).to(device)


def tools(model: torch.nn.Module, eps: float, step: float, steps: int, device: str) -> dict[str, Callable]:
    """name -> (x, y) -> adversarial images, for every tool compared."""
    kw = dict(eps=eps, step=step, steps=steps, random_start=False, batch_size=10**6)
    native = LinfPGD(backend="native", **kw)
    advertorch = LinfPGD(backend="advertorch", **kw)
    import torchattacks  # the `bench` extra: pip install -e ".[bench]"

    ta = torchattacks.PGD(model, eps=eps, alpha=step, steps=steps, random_start=False)
    out = {
        "native (explainlab)": lambda x, y: native.perturb(model, x, y),
        "advertorch 0.2.3 (LinfPGDAttack)": lambda x, y: advertorch.perturb(model, x, y),
        "torchattacks 3.5.1 (PGD)": lambda x, y: ta(x, y),
    }
    channels_last = LinfPGD(backend="native", channels_last=True, **kw)
    out["native, channels_last"] = lambda x, y: channels_last.perturb(model, x, y)
    folded = LinfPGD(backend="native", fold_bn=True, **kw)  # timed with its folding (once per call)
    out["native, fold_bn"] = lambda x, y: folded.perturb(model, x, y)
    both = LinfPGD(backend="native", fold_bn=True, channels_last=True, **kw)
    out["native, fold_bn + channels_last"] = lambda x, y: both.perturb(model, x, y)
    if device == "cuda":
        bf16 = LinfPGD(backend="native", autocast="bf16", **kw)
        out["native, bf16 autocast"] = lambda x, y: bf16.perturb(model, x, y)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet44"])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--models-dir", type=Path, default=HERE.parent.parent / "shared" / "models" / "cifar10")
    args = parser.parse_args()
    eps, step = 8 / 255, 2 / 255
    x, y = cifar_test_images(args.data_root, args.images, args.device)
    print(
        f"<!-- {datetime.date.today()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.device}, {' '.join(sys.argv)} -->"
    )
    print(f"| model | tool ({args.images} images, {args.steps} steps) | seconds | x native | robust acc. | = advertorch |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        model = pretrained_cifar_resnet(name, models_dir=str(args.models_dir)).to(args.device).eval()
        runs = tools(model, eps, step, args.steps, args.device)
        best = {k: float("inf") for k in runs}
        images = {k: attack(x[:8], y[:8]) for k, attack in runs.items()}  # warm-up (oneDNN primitives)
        for _ in range(args.rounds):
            for k, attack in runs.items():

                def call(k: str = k, attack: Callable = attack) -> None:
                    images[k] = attack(x, y)

                best[k] = min(best[k], synced_seconds(call, args.device))
        reference = images["advertorch 0.2.3 (LinfPGDAttack)"]
        native_s = best["native (explainlab)"]
        with torch.inference_mode():
            for k, seconds in best.items():
                robust = (model(images[k]).argmax(1) == y).float().mean().item()
                same = "yes" if torch.equal(images[k], reference) else f"{(images[k] != reference).float().mean():.2%} differ"
                print(f"| {name} | {k} | {seconds:.2f} | {seconds / native_s:.2f} | {robust:.3f} | {same} |")


if __name__ == "__main__":
    main()
