"""Batch fetching: ImageTensorDataset's one-indexing-op `__getitems__` vs torch's TensorDataset
(one `__getitem__` per image, then default_collate). CIFAR-sized uint8 images, shuffled, 1 process.

    python benchmarks/loader_throughput.py --images 50000 --batch 128
"""

from __future__ import annotations

import argparse
import datetime
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from explainlab.data.base import EpochShuffleSampler, ImageTensorDataset, batch_collate


def images_per_second(loader: DataLoader, n: int) -> float:
    start = time.perf_counter()
    for _ in loader:
        pass
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (args.images,))
    ours = DataLoader(
        ImageTensorDataset(images, labels),
        batch_size=args.batch,
        sampler=EpochShuffleSampler(args.images, 0),
        collate_fn=batch_collate,
    )
    floats = images.float().div(255)
    plain = DataLoader(TensorDataset(floats, labels), batch_size=args.batch, shuffle=True)
    a, b = images_per_second(ours, args.images), images_per_second(plain, args.images)
    print(
        f"| {datetime.date.today()} | CPU, {torch.get_num_threads()} threads | {args.images} | {args.batch} | "
        f"{a:,.0f} | {b:,.0f} | {a / b:.1f}x |"
    )


if __name__ == "__main__":
    main()
