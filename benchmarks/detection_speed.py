"""Detection study: fit and score time of every detector on ResNet44 features, and our batched
scoring beside what a user would otherwise run (pytorch-ood's Mahalanobis, scikit-learn's
NearestNeighbors as pytorch-ood's KNN uses it, per-image Python loops for LID and deep k-NN).

Features: channel means of the pretrained ResNet44's conv1, layer1, layer2, layer3 on the first
--train CIFAR-10 training images and --test test images (needs ../shared or EXPLAINLAB_DATA/MODELS),
or Gaussian features of the same widths with --source synthetic. One run; prints markdown rows.

    python benchmarks/detection_speed.py --train 10000 --test 1000
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from pathlib import Path

import numpy as np
import torch
from pytorch_ood.detector import Mahalanobis as OODMahalanobis
from sklearn.neighbors import NearestNeighbors

from explainlab.methods.detection import DETECTORS, knn_distances, make_detector
from timing import median_seconds

LAYERS = ["conv1", "layer1", "layer2", "layer3"]
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def resnet44_features(n_train: int, n_test: int) -> tuple[dict, dict]:
    """Pooled features of the preset's model and data (composed like `explainlab experiment=detect_resnet44`)."""
    from hydra.utils import instantiate

    from explainlab.config import compose_config
    from explainlab.runner.detection_inputs import pooled_features

    os.environ.setdefault("EXPLAINLAB_DATA", str(SHARED / "data"))
    os.environ.setdefault("EXPLAINLAB_MODELS", str(SHARED / "models" / "cifar10"))
    overrides = ["experiment=detect_resnet44", "dataset.verify=false", f"dataset.limit_train={n_train}"]
    cfg = compose_config([*overrides, f"dataset.limit_test={n_test}"], output_dir="/tmp/explainlab-bench-run")
    model, data = instantiate(cfg.model).eval(), instantiate(cfg.dataset)
    out = {}
    for split in ("train", "test"):
        ds = data.dataset(split)
        batches = [ds[i : i + 500] for i in range(0, len(ds), 500)]
        out[split] = pooled_features(model, batches, LAYERS, device=torch.device("cpu"))
    return out["train"], out["test"]


def synthetic_features(n_train: int, n_test: int) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(0)
    widths = {"conv1": 16, "layer1": 16, "layer2": 32, "layer3": 64}

    def split(n: int) -> dict:
        labels = torch.arange(n) % 10
        feats = {k: torch.randn(n, d, generator=g) + labels[:, None] * 0.3 for k, d in widths.items()}
        return {**feats, "logits": torch.randn(n, 10, generator=g), "labels": labels}

    return split(n_train), split(n_test)


def lid_loop(x: np.ndarray, reference: np.ndarray, k: int, batches: int, size: int) -> np.ndarray:
    """Per image and minibatch, Ma et al.'s Eq. 4 with numpy: what a direct port loops over."""
    out = np.empty(len(x))
    for i, row in enumerate(x):
        values = []
        for b in range(batches):
            d = np.sort(np.linalg.norm(reference[b * size : (b + 1) * size] - row, axis=1))
            d = d[d > 0][:k]
            values.append(-1.0 / np.mean(np.log(d / d[-1])))
        out[i] = np.mean(values)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=["resnet44", "synthetic"], default="resnet44")
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--test", type=int, default=1000)
    args = parser.parse_args()
    start = time.perf_counter()
    train, test = (resnet44_features if args.source == "resnet44" else synthetic_features)(args.train, args.test)
    print(f"<!-- {datetime.date.today()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.source} features, {len(train['labels'])} train / {len(test['labels'])} test, "
          f"extraction {time.perf_counter() - start:.1f} s -->")  # fmt: skip
    feats_train = {k: train[k] for k in LAYERS}
    feats_test = {k: test[k] for k in LAYERS}
    args_by_name = {"knn": {"k": 50}, "deep_knn": {"k": 75, "calibration": 750}}
    print("\n| detector | fit (s) | score (s) | test images/s |\n| --- | --- | --- | --- |")
    for name in DETECTORS:
        if name == "cpl":
            continue  # the library study's benchmarks (library_construction.py) time CPL's libraries
        det = make_detector(name, layers=LAYERS, **args_by_name.get(name, {}))
        fit_s = median_seconds(lambda det=det: det.fit(feats_train, train["logits"], train["labels"]), repeats=1)
        score_s = median_seconds(lambda det=det: det.score(feats_test, test["logits"]))
        print(f"| {name} | {fit_s:.3f} | {score_s:.3f} | {len(test['labels']) / score_s:,.0f} |")

    print("\n| step | ours (s) | reference | reference (s) | ratio |\n| --- | --- | --- | --- | --- |")
    x_tr, x_te, y_tr = feats_train["layer3"], feats_test["layer3"], train["labels"]
    ours = make_detector("mahalanobis", layers=["layer3"]).fit({"layer3": x_tr}, None, y_tr)
    ood = OODMahalanobis(None).fit_features(x_tr, y_tr)
    a = median_seconds(lambda: ours.layer_scores({"layer3": x_te}))
    b = median_seconds(lambda: ood.predict_features(x_te))
    print(f"| Mahalanobis score, layer3 (64-d), {len(x_te)} images | {a:.4f} | pytorch-ood Mahalanobis "
          f"(float32, loop over classes) | {b:.4f} | {b / a:.1f}x |")  # fmt: skip
    a = median_seconds(lambda: make_detector("mahalanobis", layers=["layer3"]).fit({"layer3": x_tr}, None, y_tr), 1)
    b = median_seconds(lambda: OODMahalanobis(None).fit_features(x_tr, y_tr), 1)
    print(f"| Mahalanobis fit, layer3, {len(x_tr)} images | {a:.4f} | pytorch-ood fit_features | {b:.4f} "
          f"| {b / a:.1f}x |")  # fmt: skip
    nn = NearestNeighbors(n_jobs=-1).fit(x_tr.double().numpy())
    a = median_seconds(lambda: knn_distances(x_te, x_tr, 75))
    b = median_seconds(lambda: nn.kneighbors(x_te.double().numpy(), n_neighbors=75))
    print(f"| 75 nearest neighbours (deep k-NN, one layer), {len(x_te)} queries | {a:.4f} | scikit-learn "
          f"NearestNeighbors (pytorch-ood KNN) | {b:.4f} | {b / a:.1f}x |")  # fmt: skip
    lid = make_detector("lid", layers=["layer3"]).fit({"layer3": x_tr}, None, None)
    ref = lid.reference_["layer3"].numpy()
    few = x_te[:200]
    a = median_seconds(lambda: lid.layer_scores({"layer3": few}))
    b = median_seconds(lambda: lid_loop(few.double().numpy(), ref, 20, 10, 100), repeats=1)
    expected = lid_loop(few.double().numpy(), ref, 20, 10, 100)
    np.testing.assert_allclose(lid.layer_scores({"layer3": few})[:, 0].numpy(), expected, rtol=1e-8)
    print(f"| LID (k=20, 10 minibatches of 100), layer3, {len(few)} images | {a:.4f} | per-image numpy loop "
          f"(same numbers) | {b:.4f} | {b / a:.1f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
