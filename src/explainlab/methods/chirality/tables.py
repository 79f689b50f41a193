"""Tidy tables of S profiles (one row per model, weights, initialisation, seed and layer) and the
commutative residual E read from them (paper 000, Sec. 4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn

from .similarity import ChiralityProfile
from .stages import analysed_stage, layer_stages, model_family, stretched_positions
from .theory import expected_similarity


def profile_table(
    net: nn.Module, conv: Mapping[str, torch.Tensor], *, device: str | torch.device | None = None, **keys: Any
) -> pd.DataFrame:
    """S of every conv in `conv` ({layer: kernel weights (K, C, h, w)}, e.g. the net's own or reinitialised ones)
    with each layer's stage, stretched x position, whether its stage is analysed, and the analytic
    untrained expectation; `keys` (e.g. model, weights, init, seed) become leading columns after 'family'."""
    table = ChiralityProfile(device=device).fit_weights(conv).to_frame()
    family, stages = model_family(net), layer_stages(net)
    table["stage"] = table["layer"].map(stages)
    table["x"] = stretched_positions(table["stage"].tolist())
    table["analysed"] = [analysed_stage(family, s) for s in table["stage"]]
    table["expected_untrained"] = [
        expected_similarity(k, *(int(v) for v in shape.split("x")))
        for k, shape in zip(table["kernels"], table["kernel_shape"], strict=True)
    ]
    for key, value in reversed({"family": family, **keys}.items()):
        table.insert(0, key, value)
    return table


def residual_tables(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """E(L) = |mean_seed S_untrained(L) − S_trained(L)| (default init) per layer, and E(M) summed over
    the analysed layers, for every model of `table` (`profile_table` rows) that has both profiles.
    E(M)'s yardstick `untrained_spread` = Σ_L std over seeds of S_untrained(L) (analysed layers; NaN
    with one seed): what the initialisation's draw alone moves S by."""
    keys = ["model", "layer", "position", "stage", "analysed"]
    untrained = table[(table["weights"] == "untrained") & (table["init"] == "default")]
    untrained = untrained.groupby(keys, sort=False)["similarity"].agg(["mean", "std"]).reset_index()
    untrained = untrained.rename(columns={"mean": "similarity_untrained", "std": "similarity_untrained_std"})
    trained = table[table["weights"] == "trained"][[*keys, "similarity"]]
    merged = untrained.merge(trained.rename(columns={"similarity": "similarity_trained"}), on=keys)
    merged["E"] = (merged["similarity_untrained"] - merged["similarity_trained"]).abs()
    total = (
        merged[merged["analysed"]]
        .groupby("model", sort=False)
        .agg(E_M=("E", "sum"), layers=("E", "size"),
             untrained_spread=("similarity_untrained_std", lambda sd: sd.sum(min_count=len(sd))))
        .reset_index()
    )
    return merged, total
