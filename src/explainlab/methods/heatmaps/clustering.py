"""Hierarchical clustering of models by their heat maps (paper 003, Secs. 3.2.2 and 4.2) and the
merge-order statistics of its Table 4.13.

Paper 003 turns each image's SSIM matrix into distances 1 − SSIM and clusters the models with ward
linkage (scipy's Lance-Williams update; ward's merge heights are increases of within-cluster variance
only for Euclidean inputs, which 1 − SSIM is not, so the heights are read as an ordering, as the paper
does). The project's earlier variants stay selectable: average linkage on 1 − SSIM and ward on the
flattened maps (Euclidean). Linkage names used in tables: LINKAGES.

Table 4.13 counts, over images, how each model joins the tree: the last and only one to join the
others (`joins_last`), the one joining just before it (`joins_second_last`), one of two models that
join the rest together at the end (`in_last_pair`), a member of the first cluster of three
(`in_first_triple`), and the half-distance rule of Sec. 4.2.2 (`distinct_styles`: the first merge
happens above half the height of the last one, so no two models have similar maps).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.cluster.hierarchy import cophenet, fcluster, linkage
from scipy.spatial.distance import pdist, squareform

from explainlab.errors import check_choice, check_int

# '<method>_1-ssim': scipy linkage on the condensed 1 − SSIM distances; 'ward_maps': ward on the
# flattened maps (Euclidean).
SSIM_LINKAGES = ("ward", "average", "complete", "single", "weighted")
LINKAGES = (*(f"{m}_1-ssim" for m in SSIM_LINKAGES), "ward_maps")
STATISTICS = ("joins_last", "joins_second_last", "in_last_pair", "in_first_triple")


def ssim_distance(similarity: torch.Tensor) -> np.ndarray:
    """Condensed distance vector 1 − SSIM for scipy (diagonal dropped; clipped at 0)."""
    distance = (1 - similarity.double()).clamp_min(0).cpu().numpy()
    np.fill_diagonal(distance, 0)
    return squareform(distance, checks=False)


def cluster_heatmaps(maps: torch.Tensor, *, method: str = "ward") -> tuple[np.ndarray, float]:
    """Ward (or any scipy method valid for Euclidean data) linkage of the flattened maps (M, H, W).

    Returns (linkage matrix (M − 1, 4), cophenetic correlation with the Euclidean distances)."""
    flat = maps.flatten(1).double().cpu().numpy()
    tree = linkage(flat, method=method, metric="euclidean")
    return tree, float(cophenet(tree, pdist(flat))[0])


def cluster_ssim(similarity: torch.Tensor, *, method: str = "average") -> tuple[np.ndarray, float]:
    """Linkage of the 1 − SSIM distances of an (M, M) SSIM matrix: 'average' (the project's default)
    or 'ward' (paper 003; see the module docstring), 'complete', 'single', 'weighted'.

    Returns (linkage matrix (M − 1, 4), cophenetic correlation with 1 − SSIM)."""
    check_choice("linkage", method, SSIM_LINKAGES)
    condensed = ssim_distance(similarity)
    tree = linkage(condensed, method=method)
    return tree, float(cophenet(tree, condensed)[0])


def cluster(linkage_name: str, similarity: torch.Tensor, maps: torch.Tensor | None = None) -> tuple[np.ndarray, float]:
    """The tree and cophenetic correlation of one of LINKAGES: similarity (M, M); maps (M, H, W) for
    'ward_maps'."""
    check_choice("linkage", linkage_name, LINKAGES)
    if linkage_name == "ward_maps":
        if maps is None:
            raise ValueError("linkage 'ward_maps' needs the maps")
        return cluster_heatmaps(maps)
    return cluster_ssim(similarity, method=linkage_name.removesuffix("_1-ssim"))


def merge_order(tree: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """How each of the M models joins a scipy linkage tree (M − 1, 4), one row per model.

    Columns: model; join_height (height of the first merge it takes part in); joins_last (it is alone
    on one side of the final merge); joins_second_last (alone on one side of the second-to-last merge,
    whose other side has two or more models); in_last_pair (on a two-model side of the final merge);
    in_first_triple (in the first cluster of three formed, if no larger cluster formed before it);
    first_triple (that cluster's models, sorted, joined by '+'); first_height, last_height (heights
    of the first and last merges); distinct_styles (first_height > last_height / 2, Sec. 4.2.2)."""
    m = len(names)
    if tree.shape != (m - 1, 4) or m < 2:
        raise ValueError(f"a linkage tree of {m} models must be ({m - 1}, 4), got {tree.shape}")
    members: list[list[int]] = [[i] for i in range(m)]
    join_height = np.full(m, np.nan)
    triple: list[int] = []
    for a, b, height, _ in tree:
        left, right = members[int(a)], members[int(b)]
        for leaf in (int(a), int(b)):
            if leaf < m and np.isnan(join_height[leaf]):
                join_height[leaf] = height
        merged = left + right
        if not triple and len(merged) >= 3 and not any(len(c) >= 3 for c in members[m:]):
            triple = merged if len(merged) == 3 else [-1]
        members.append(merged)
    final = [members[int(c)] for c in tree[-1, :2]]
    second = [members[int(c)] for c in tree[-2, :2]] if m > 2 else [[], []]
    last = {s[0] for s in final if len(s) == 1}
    second_last = {s[0] for s in second if len(s) == 1 and max(map(len, second)) >= 2}
    last_pair = {leaf for s in final if len(s) == 2 for leaf in s}
    first_triple = "+".join(sorted(names[i] for i in triple)) if len(triple) == 3 else ""
    first, final_height = float(tree[0, 2]), float(tree[-1, 2])
    return pd.DataFrame(
        {
            "model": list(names),
            "join_height": join_height,
            "joins_last": [i in last for i in range(m)],
            "joins_second_last": [i in second_last for i in range(m)],
            "in_last_pair": [i in last_pair for i in range(m)],
            "in_first_triple": [i in triple for i in range(m)],
            "first_triple": first_triple,
            "first_height": first,
            "last_height": final_height,
            "distinct_styles": first > final_height / 2,
        }
    )


def clustering_table(
    similarity: torch.Tensor,
    names: Sequence[str],
    *,
    linkages: Sequence[str] = ("ward_1-ssim", "average_1-ssim", "ward_maps"),
    maps: torch.Tensor | None = None,
    cut: int = 2,
) -> pd.DataFrame:
    """Per image and on the mean SSIM matrix, for each linkage: the tree's merge order (`merge_order`),
    its cophenetic correlation and a cut into `cut` clusters. One row per (image, linkage, model).

    similarity: (I, M, M) SSIM matrices of I images; maps: (I, M, H, W), needed for 'ward_maps'
    (per image only). image is the image index, or 'mean' for the mean matrix."""
    if similarity.dim() != 3 or similarity.shape[1:] != (len(names), len(names)):
        raise ValueError(f"expected SSIM matrices (images, {len(names)}, {len(names)}), got {tuple(similarity.shape)}")
    for name in linkages:
        check_choice("linkages", name, LINKAGES)
    check_int("cut", cut, minimum=1)
    if len(names) < 3:
        raise ValueError(f"clustering needs at least 3 models, got {len(names)}")
    parts = []
    cases = [(i, similarity[i], None if maps is None else maps[i]) for i in range(len(similarity))]
    cases.append(("mean", similarity.mean(0), None))
    for image, matrix, image_maps in cases:
        for name in linkages:
            if name == "ward_maps" and image == "mean":
                continue
            tree, coph = cluster(name, matrix, image_maps)
            part = merge_order(tree, names)
            part.insert(0, "linkage", name)
            part.insert(0, "image", image)
            part["cluster"] = fcluster(tree, cut, criterion="maxclust")
            part["cophenetic"] = coph
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def merge_statistics(table: pd.DataFrame) -> pd.DataFrame:
    """Table 4.13's counts from `clustering_table` rows (any extra key columns, e.g. method, are kept),
    over the individual images (not the mean): one row per (keys, statistic, subject) with count and
    images. Statistics: STATISTICS per model; 'among_last_two' (joins_last, joins_second_last or
    in_last_pair) per model; 'first_triple' per triple of models; 'distinct_styles' (half-distance rule)."""
    per_image = table[table["image"] != "mean"]
    keys = [c for c in per_image.columns if c not in _TREE_COLUMNS]
    rows = []
    for key, part in per_image.groupby(keys, sort=False):
        key = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        images = part["image"].nunique()
        by_model = part.assign(among_last_two=part["joins_last"] | part["joins_second_last"] | part["in_last_pair"])
        for statistic in (*STATISTICS, "among_last_two"):
            counts = by_model.groupby("model", sort=False)[statistic].sum()
            rows += [key | {"statistic": statistic, "subject": model, "count": int(n), "images": images}
                     for model, n in counts.items()]  # fmt: skip
        trees = part.drop_duplicates("image")
        for triple, n in trees["first_triple"][trees["first_triple"] != ""].value_counts().items():
            rows.append(key | {"statistic": "first_triple", "subject": triple, "count": int(n), "images": images})
        rows.append(key | {"statistic": "distinct_styles", "subject": "", "count": int(trees["distinct_styles"].sum()),
                           "images": images})  # fmt: skip
    return pd.DataFrame(rows)


_TREE_COLUMNS = {
    "image", "model", "join_height", *STATISTICS, "first_triple", "first_height", "last_height", "distinct_styles",
    "cluster", "cophenetic",
}  # fmt: skip
