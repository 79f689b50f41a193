"""Compare a `libnet_resnet44` run's CPL and AUROC with the original code's saved consistencies
(giscard88/hypothesis-building, `test/correlations/layer-{norm,adv}_<set>-<eps>.json`: per ordered
layer pair 'i_j', the cosine between the layers' prediction vectors of each of the 200 images).

    git clone https://github.com/giscard88/hypothesis-building
    python scripts/compare_libnet_original.py outputs/libnet_resnet44_original/runs/<time> hypothesis-building/test/correlations

The original numbered its threshold sets differently from the paper's Table 1 (the files were
written before its final set list), so each original set is matched to the run's threshold set
whose clean CPL agrees best with it. The original's CPL is the mean over all its layer pairs (as
Eq. 5; both orders of a pair hold the same cosine), and its AUROC separates clean from adversarial
CPL as the run's does. Prints one row per (original set, eps) and writes <run>/results/original_comparison.csv.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from explainlab.results.io import atomic_write_with


def original_cpl(path: Path) -> np.ndarray:
    pairs = json.loads(path.read_text())
    return np.mean([np.asarray(v, dtype=float) for v in pairs.values()], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("original_dir", type=Path)
    args = parser.parse_args()
    ours = pd.read_csv(args.run_dir / "results" / "cpl.csv")
    auroc = pd.read_csv(args.run_dir / "results" / "auroc.csv")
    clean = {name: rows.sort_values("index")["cpl"].to_numpy() for name, rows in ours[ours.eps == 0].groupby(
        "threshold_set")}  # fmt: skip
    files = {}
    for path in sorted(args.original_dir.glob("layer-*_*-*.json")):
        kind, set_id, eps = re.match(r"layer-(norm|adv)_(\d+)-([\d.]+)\.json", path.name).groups()
        files[(kind, set_id, float(eps))] = path
    rows = []
    for set_id in sorted({k[1] for k in files}):
        norm_files = [p for (kind, s, _), p in files.items() if kind == "norm" and s == set_id]
        if not norm_files:
            continue
        orig_clean = original_cpl(norm_files[0])
        match, gap = min(((name, float(np.abs(values[: len(orig_clean)] - orig_clean).max()))
                          for name, values in clean.items()), key=lambda t: t[1])  # fmt: skip
        for (kind, s, eps), path in sorted(files.items()):
            if kind != "adv" or s != set_id:
                continue
            adv = original_cpl(path)
            labels = np.r_[np.zeros(len(adv)), np.ones(len(orig_clean))]
            theirs = roc_auc_score(labels, np.r_[adv, orig_clean])
            mine = ours[(ours.threshold_set == match) & np.isclose(ours.eps, eps)]
            hit = auroc[(auroc.threshold_set == match) & np.isclose(auroc.eps, eps)]
            rows.append({
                "original_set": int(set_id), "threshold_set": match, "clean_cpl_max_abs_diff": gap, "eps": eps,
                "auroc_original": theirs, "auroc_ours": float(hit.auroc.iloc[0]) if len(hit) else float("nan"),
                "adv_cpl_mean_original": float(adv.mean()),
                "adv_cpl_mean_ours": float(mine[mine.is_adversarial].cpl.mean()) if len(mine) else float("nan"),
            })  # fmt: skip
    result = pd.DataFrame(rows)
    atomic_write_with(args.run_dir / "results" / "original_comparison.csv", lambda t: result.to_csv(t, index=False))
    print(result.to_string(index=False))


if __name__ == "__main__":
    main()
