"""Download data sets and published checkpoints once, for machines whose jobs run offline.

    python scripts/prefetch.py --data mnist cifar10 --models resnet20 resnet44 --root data --cache .cache

Afterwards point jobs at them: EXPLAINLAB_DATA=<root>, EXPLAINLAB_CACHE=<cache>.
"""

from __future__ import annotations

import argparse

from explainlab.data import CIFAR10DataModule, MNISTDataModule
from explainlab.models.loading import AKAMASTER_FILES, pretrained_path

DATA = {"mnist": MNISTDataModule, "cifar10": CIFAR10DataModule}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="*", default=[], choices=sorted(DATA))
    parser.add_argument("--models", nargs="*", default=[], choices=sorted(AKAMASTER_FILES))
    parser.add_argument("--root", default=None, help="data root (default: $EXPLAINLAB_DATA or ./data)")
    parser.add_argument("--cache", default=".cache", help="cache folder for checkpoints")
    args = parser.parse_args()
    for name in args.data:
        module = DATA[name](root=args.root, download=True)
        module.prepare_data()
        print(f"{name}: {module.root}")
    for name in args.models:
        print(f"{name}: {pretrained_path(name, 'akamaster', cache_dir=args.cache)}")


if __name__ == "__main__":
    main()
