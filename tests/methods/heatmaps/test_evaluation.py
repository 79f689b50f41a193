"""The heat-map study's tables (`methods.heatmaps.evaluation`) equal the functions they tabulate."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from explainlab.methods.heatmaps import clustering_table, evaluation, insertion_deletion, perturbation_curve, ssim_matrix


def _maps(models: int = 3, methods: tuple[str, ...] = ("a", "b"), images: int = 2, side: int = 16) -> dict:
    g = torch.Generator().manual_seed(0)
    return {f"m{k}": {m: torch.rand(images, side, side, generator=g) for m in methods} for k in range(models)}


def test_similarity_matrices_and_table_are_ssim_matrix_per_image() -> None:
    maps = _maps()
    similarity = evaluation.similarity_matrices(maps, ["a", "b"], sigma=1.0)
    assert similarity["a"].shape == (2, 3, 3)
    expected = ssim_matrix(torch.stack([maps[n]["b"][1] for n in maps]), sigma=1.0)
    torch.testing.assert_close(similarity["b"][1], expected)
    table = evaluation.ssim_table(similarity["b"][1], list(maps))
    assert list(table.columns) == ["model_a", "model_b", "ssim"] and len(table) == 9
    assert table.set_index(["model_a", "model_b"]).loc[("m0", "m2"), "ssim"] == pytest.approx(float(expected[0, 2]))


def test_clusters_are_clustering_table_per_method() -> None:
    maps = _maps()
    similarity = evaluation.similarity_matrices(maps, ["a", "b"])
    table = evaluation.clusters(similarity, maps, ["ward_1-ssim", "ward_maps"])
    assert list(table.columns[:3]) == ["method", "image", "linkage"] and set(table["method"]) == {"a", "b"}
    stacked = torch.stack([torch.stack([maps[n]["a"][i] for n in maps]) for i in range(2)])
    expected = clustering_table(similarity["a"], list(maps), linkages=["ward_1-ssim", "ward_maps"], maps=stacked)
    got = table[table["method"] == "a"].drop(columns="method").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_aopc_and_insertion_deletion_tables_equal_the_curves() -> None:
    torch.manual_seed(0)
    model, x = _Linear().eval(), torch.rand(3, 3, 16, 16)
    target = torch.tensor([0, 1, 2])
    maps = {"a": torch.rand(3, 16, 16), "b": torch.rand(3, 16, 16)}
    table = evaluation.aopc_table(model, x, maps, target, orders=["morf", "random"], steps=3, patch=2,
                                  fill="mean", seed=5)  # fmt: skip
    assert list(table.columns) == ["method", "order", "step", "score"] and len(table) == 2 * 2 * 4
    _, curve = perturbation_curve(model, x, maps["b"], target, steps=3, patch=2, order="random", fill="mean", seed=5)
    got = table[(table["method"] == "b") & (table["order"] == "random")]["score"].to_numpy()
    torch.testing.assert_close(torch.tensor(got), curve.double(), check_dtype=False)
    curves, areas = evaluation.insertion_deletion_tables(model, x, maps, target, steps=4)
    assert len(curves) == 2 * 2 * 5 and len(areas) == 2 * 2 * 3
    scores, auc = insertion_deletion(model, x, maps["a"], target, mode="insertion", steps=4)
    got = areas[(areas["method"] == "a") & (areas["mode"] == "insertion")]["auc"].to_numpy()
    torch.testing.assert_close(torch.tensor(got), auc.double(), check_dtype=False)
    mean = curves[(curves["method"] == "a") & (curves["mode"] == "insertion")]
    torch.testing.assert_close(torch.tensor(mean["score"].to_numpy()), scores.mean(0).double(), check_dtype=False)
    assert mean["fraction"].tolist() == [0, 0.25, 0.5, 0.75, 1.0]


def test_correct_everywhere_and_final_aopc() -> None:
    predicted = torch.tensor([[0, 1, 2, 3], [0, 1, 0, 3], [0, 2, 2, 3]])
    assert evaluation.correct_everywhere(predicted, torch.tensor([0, 1, 2, 3])).tolist() == [True, False, False, True]
    with pytest.raises(ValueError, match="predictions"):
        evaluation.correct_everywhere(predicted, torch.tensor([0, 1]))
    aopc = pd.DataFrame({"model": ["m"] * 6, "method": ["a"] * 4 + ["b"] * 2, "order": ["morf", "morf", "random",
                         "random", "morf", "morf"], "step": [0, 1, 0, 1, 0, 1], "score": [0, 2.0, 0, 1.0, 0, 3.0]})  # fmt: skip
    final = evaluation.final_aopc(aopc).set_index(["method", "order"])
    assert final.loc[("a", "morf"), "random"] == 1.0 and pd.isna(final.loc[("b", "morf"), "random"])
