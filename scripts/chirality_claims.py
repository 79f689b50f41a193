"""Paper 000's two open claims from a `method=chirality` run: does mean S rank the CIFAR ResNets as
their accuracy does (Fig. 5), and what the no-flip ablation does (Fig. 6), split into the j = j'
terms (exactly 1 without the flip) and the j ≠ j' pairs.

    python scripts/chirality_claims.py outputs/chirality_paper/runs/<time>
    python scripts/chirality_claims.py <run> --accuracy resnet20=91.5 resnet32=92.4 resnet44=93.3 resnet56=93.6

Accuracies default to the published test accuracies of akamaster/pytorch_resnet_cifar10 (100 − the
test error in its README). Writes results/chirality_rank.csv and results/noflip_parts.csv into the
run directory and prints both. The split needs the trained weights (`$EXPLAINLAB_MODELS`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from explainlab.methods.chirality import flippable_convs, kernel_similarity, mean_similarity, rank_agreement
from explainlab.models.build import IMAGENET_MEAN, IMAGENET_STD, build_model
from explainlab.results.io import atomic_write_with

PUBLISHED = {"resnet20": 91.73, "resnet32": 92.63, "resnet44": 93.10, "resnet56": 93.39}


def noflip_parts(model_names: list[str], models_dir: str | None) -> pd.DataFrame:
    """Per trained akamaster model and layer: S with and without the flip, over all pairs and over the
    j ≠ j' pairs only."""
    rows = []
    for name in model_names:
        model = build_model(name, in_channels=3, image_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                            pretrained="akamaster", models_dir=models_dir)  # fmt: skip
        for layer, conv in flippable_convs(model).items():
            w = conv.weight.detach().double()
            rows.append({
                "model": name, "layer": layer,
                "similarity": float(kernel_similarity(w)[0]),
                "similarity_noflip": float(kernel_similarity(w, flip=False)[0]),
                "offdiag": float(kernel_similarity(w, diagonal=False)[0]),
                "offdiag_noflip": float(kernel_similarity(w, flip=False, diagonal=False)[0]),
            })  # fmt: skip
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--accuracy", nargs="*", default=None, help="model=accuracy pairs (default: published)")
    args = parser.parse_args()
    table = pd.read_csv(args.run_dir / "results" / "chirality.csv")
    accuracy = dict(PUBLISHED)
    if args.accuracy:
        accuracy = {k: float(v) for k, v in (pair.split("=") for pair in args.accuracy)}
    means = mean_similarity(table)
    scores = {m: float(means[m]) for m in accuracy if m in means.index}
    missing = sorted(set(accuracy) - set(scores))
    if missing:
        raise SystemExit(f"no trained rows for {missing} in {args.run_dir}/results/chirality.csv")
    ranked = rank_agreement(scores, {m: accuracy[m] for m in scores})
    noflip = mean_similarity(table, column="similarity_noflip")
    rank_rows = pd.DataFrame([{"model": m, "mean_similarity": scores[m], "mean_similarity_noflip": float(noflip[m]),
                               "accuracy": accuracy[m]} for m in scores])  # fmt: skip
    summary = {k: v for k, v in ranked.items() if k != "models"}
    rank_rows = pd.concat([rank_rows, pd.DataFrame([{"model": "rank correlation", **summary}])], ignore_index=True)
    parts = noflip_parts(list(scores), os.environ.get("EXPLAINLAB_MODELS"))
    results = args.run_dir / "results"
    atomic_write_with(results / "chirality_rank.csv", lambda tmp: rank_rows.to_csv(tmp, index=False))
    atomic_write_with(results / "noflip_parts.csv", lambda tmp: parts.to_csv(tmp, index=False))
    print(rank_rows.to_string(index=False))
    all_rows = table.dropna(subset=["similarity", "similarity_noflip"])
    higher = int((all_rows["similarity_noflip"] > all_rows["similarity"]).sum())
    print(f"\nno-flip S > S in {higher} of {len(all_rows)} profiled layers (all models, weights, seeds)")
    print(f"j != j' pairs only (trained CIFAR ResNets): no-flip higher in "
          f"{int((parts.offdiag_noflip > parts.offdiag).sum())} of {len(parts)} layers; mean S "
          f"{parts.similarity.mean():.4f} -> {parts.similarity_noflip.mean():.4f}, j != j' "
          f"{parts.offdiag.mean():.4f} -> {parts.offdiag_noflip.mean():.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
