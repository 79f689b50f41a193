"""The heat-map figure functions draw the tables and trees the methods return."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch

from explainlab.methods.heatmaps import cluster, insertion_deletion, sparsity_table
from explainlab.methods.heatmaps.sanity import model_randomisation
from explainlab.results import heatmap_figures


def test_figures_draw_method_outputs() -> None:
    similarity = torch.rand(5, 5, generator=torch.Generator().manual_seed(0)).double()
    similarity = (similarity + similarity.T) / 2
    similarity.fill_diagonal_(1)
    tree, coph = cluster("ward_1-ssim", similarity)
    figures = [heatmap_figures.draw_dendrogram(tree, list("abcde"), "gradcam, image 0", cophenetic=coph)]
    figures.append(heatmap_figures.sparsity(sparsity_table({"a": {"g": torch.rand(3, 8, 8)},
                                                            "b": {"g": torch.rand(3, 8, 8)}})))  # fmt: skip
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(3 * 24 * 24, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)
    )
    x = torch.rand(2, 3, 24, 24)

    def maps(m: torch.nn.Module, images: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"input": images.mean(1) * m[1].weight.abs().mean()}

    table = model_randomisation(net, x, torch.zeros(2, dtype=torch.long), maps, measures=("spearman", "hog"))
    figures.append(heatmap_figures.randomisation_measures(table))
    rows = []
    for mode in ("deletion", "insertion"):
        scores, _ = insertion_deletion(net, x, x.mean(1), torch.zeros(2, dtype=torch.long), mode=mode, steps=4)
        rows += [{"model": "net", "method": "input", "mode": mode, "image": i, "step": k, "fraction": k / 4,
                  "score": float(v)} for i in range(2) for k, v in enumerate(scores[i])]  # fmt: skip
    figures.append(heatmap_figures.insertion_deletion(pd.DataFrame(rows)))
    for fig in figures:
        assert isinstance(fig, plt.Figure) and fig.axes
        plt.close(fig)
