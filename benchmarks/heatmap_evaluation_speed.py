"""Heat-map evaluation: the project's hand-written drivers side by side with Quantus 0.6.0, which a
user would otherwise call, on the same model, images and maps (one run).

- model-parameter randomisation: `sanity.model_randomisation` (every layer Quantus randomises,
  `layers="all"`, cascading, Spearman and SSIM from one set of maps) against `quantus.MPRT`, which
  recomputes the maps once per similarity measure (two runs: Spearman, SSIM);
- region perturbation (AOPC): `perturbation_curve` against `quantus.RegionPerturbation`;
- Gini index of every map: `sparsity.gini_index` (batched) against Quantus' `gini_coeffiient` (a loop);
- importing Quantus.

Model: a CIFAR ResNet (default resnet20, random weights: timing does not depend on them), --batch
32x32 images, gradient maps. CPU, and CUDA when present. Markdown rows for docs/benchmarks.md.

    python benchmarks/heatmap_evaluation_speed.py --batch 8
"""

from __future__ import annotations

import argparse
import datetime
import time

import numpy as np
import torch
from timing import synced_seconds

from explainlab.methods.heatmaps import gini_index, perturbation_curve
from explainlab.methods.heatmaps.attribution import explain, to_heatmap
from explainlab.methods.heatmaps.sanity import model_randomisation
from explainlab.models.build import IMAGENET_MEAN, IMAGENET_STD, build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    start = time.perf_counter()
    import quantus

    import_seconds = time.perf_counter() - start
    print(f"<!-- {datetime.date.today()}, torch {torch.__version__}, quantus {quantus.__version__}, "
          f"{torch.get_num_threads()} threads -->")  # fmt: skip
    print(f"| step ({args.model}, batch {args.batch} x 3x32x32, gradient maps) | device | explainlab s | Quantus s |")
    print("| --- | --- | --- | --- |")
    print(f"| import quantus | - | - | {import_seconds:.1f} |")
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        rows(quantus, args.model, args.batch, device)


def rows(quantus: object, name: str, batch: int, device: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, in_channels=3, image_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD).eval().to(device)
    x = torch.rand(batch, 3, 32, 32, device=device)
    target = model(x).argmax(1)

    def maps(m: torch.nn.Module, images: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"gradient": to_heatmap(explain(m, images, t, "gradient"), "gradient")}

    def quantus_maps(model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray, **kwargs: object) -> np.ndarray:
        images = torch.as_tensor(inputs, device=device)
        return maps(model, images, torch.as_tensor(targets, device=device))["gradient"][:, None].cpu().numpy()

    ours = synced_seconds(lambda: model_randomisation(model, x, target, maps, layers="all",
                                                      measures=("spearman", "ssim")), device)  # fmt: skip
    x_np, y_np = x.cpu().numpy(), target.cpu().numpy()

    def ssim(a: np.ndarray, b: np.ndarray, batched: bool = False, **kwargs: object) -> np.ndarray:
        # Quantus' batched ssim returns a list, which its MPRT cannot take (and MPRT hands it flattened maps).
        return np.array(quantus.functions.similarity_func.ssim(a, b, batched=batched, **kwargs))

    def quantus_mprt() -> None:
        for similarity in (quantus.functions.similarity_func.correlation_spearman, ssim):
            metric = quantus.MPRT(similarity_func=similarity, abs=False, normalise=False, disable_warnings=True)
            metric(model=model, x_batch=x_np, y_batch=y_np, a_batch=None, explain_func=quantus_maps, device=device,
                   channel_first=True)  # fmt: skip

    theirs = synced_seconds(quantus_mprt, device)
    print(
        f"| model-parameter randomisation, all {name} layers, Spearman + SSIM | {device} | {ours:.1f} | {theirs:.1f} |"
    )
    heat = maps(model, x, target)["gradient"]
    ours = synced_seconds(lambda: perturbation_curve(model, x, heat, target, steps=16, patch=4, fill="black"), device)

    def quantus_aopc() -> None:
        metric = quantus.RegionPerturbation(patch_size=4, regions_evaluation=16, normalise=False, disable_warnings=True)
        metric(model=model, x_batch=x_np, y_batch=y_np, a_batch=heat[:, None].cpu().numpy(), device=device,
               channel_first=True, softmax=False)  # fmt: skip

    theirs = synced_seconds(quantus_aopc, device)
    print(f"| region perturbation, 16 steps of 4x4 regions | {device} | {ours:.2f} | {theirs:.2f} |")
    many = torch.rand(64 * batch, 32, 32, device=device)
    ours = synced_seconds(lambda: gini_index(many), device)
    theirs = synced_seconds(lambda: [quantus.functions.complexity_func.gini_coeffiient(m, m[None])
                                     for m in many.cpu().numpy()], device)  # fmt: skip
    print(f"| Gini index of {len(many)} maps of 32x32 | {device} | {ours:.3f} | {theirs:.3f} |")


if __name__ == "__main__":
    main()
