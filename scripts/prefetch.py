"""Download data sets and published checkpoints once, for machines whose jobs run offline.

    python scripts/prefetch.py --data mnist cifar10 --models resnet20 resnet44 --root data --cache .cache
    python scripts/prefetch.py --torchvision alexnet vgg16 ...   # ImageNet weights (weights=DEFAULT)

Afterwards point jobs at them: EXPLAINLAB_DATA=<root>, EXPLAINLAB_CACHE=<cache>; torchvision weights go
to the torch hub cache ($TORCH_HOME/hub/checkpoints), which experiment=heatmaps_paper and
chirality_paper read.
"""

from __future__ import annotations

import argparse

import torchvision

from explainlab.data import CIFAR10DataModule, MNISTDataModule
from explainlab.models.build import TORCHVISION_MODELS
from explainlab.models.loading import AKAMASTER_FILES, pretrained_path

DATA = {"mnist": MNISTDataModule, "cifar10": CIFAR10DataModule}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="*", default=[], choices=sorted(DATA))
    parser.add_argument("--models", nargs="*", default=[], choices=sorted(AKAMASTER_FILES))
    parser.add_argument("--torchvision", nargs="*", default=[], choices=TORCHVISION_MODELS)
    parser.add_argument("--root", default=None, help="data root (default: $EXPLAINLAB_DATA or ./data)")
    parser.add_argument("--cache", default=".cache", help="cache folder for checkpoints")
    args = parser.parse_args()
    for name in args.data:
        module = DATA[name](root=args.root, download=True)
        module.prepare_data()
        print(f"{name}: {module.root}")
    for name in args.models:
        print(f"{name}: {pretrained_path(name, 'akamaster', cache_dir=args.cache)}")
    for name in args.torchvision:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        weights.get_state_dict(progress=True, check_hash=True)
        print(f"{name}: {weights.url} in the torch hub cache")


if __name__ == "__main__":
    main()
