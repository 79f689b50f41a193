"""Merge a multirun directory's result tables into one table and figure each.

    python scripts/collect_multirun.py outputs/library/multiruns/2026-11-22_10-00-00 \
        --tables predictions library_sizes auroc

Writes <sweep>/collected/<table>.csv (with `job` and the varying override columns) and
<table>.png for the library study's tables.
"""

from __future__ import annotations

import argparse

from explainlab.results.collect import collect_to_disk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir")
    parser.add_argument("--tables", nargs="+", default=["predictions", "library_sizes"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    for path in collect_to_disk(args.sweep_dir, args.tables, args.out):
        print(path)


if __name__ == "__main__":
    main()
