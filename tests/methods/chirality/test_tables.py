"""S-profile tables and the commutative residual read from them (`methods/chirality/tables.py`)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from explainlab.methods.chirality import conv_weights, profile_table, residual_tables
from explainlab.models.build import build_model


def test_residuals_of_a_planted_table() -> None:
    rows = []
    for layer, analysed, trained, untrained in (("a", True, 0.9, (0.5, 0.7)), ("b", False, 0.2, (0.4, 0.4))):
        rows.append({"model": "m", "layer": layer, "position": 0, "stage": 1, "analysed": analysed,
                     "weights": "trained", "init": "run", "similarity": trained})  # fmt: skip
        rows += [{"model": "m", "layer": layer, "position": 0, "stage": 1, "analysed": analysed,
                  "weights": "untrained", "init": "default", "similarity": s} for s in untrained]  # fmt: skip
    rows.append({**rows[1], "init": "normal", "similarity": 0.0})  # other initialisations are not in E
    per_layer, total = residual_tables(pd.DataFrame(rows))
    assert per_layer.set_index("layer")["E"].to_dict() == pytest.approx({"a": 0.3, "b": 0.2})
    # Yardstick: the untrained seeds' std of S (0.5, 0.7 -> 0.1414) over the analysed layers.
    assert total.to_dict("records") == [
        {"model": "m", "E_M": pytest.approx(0.3), "layers": 1, "untrained_spread": pytest.approx(2**0.5 / 10)}
    ]


def test_profile_table_columns_and_keys() -> None:
    torch.manual_seed(0)
    net = build_model("small_cnn", image_size=8)
    table = profile_table(net, conv_weights(net), device="cpu", model="small_cnn", seed=0)
    assert list(table.columns[:3]) == ["family", "model", "seed"] and len(table) == 2
    assert {"similarity", "stage", "x", "analysed", "expected_untrained"} <= set(table.columns)
