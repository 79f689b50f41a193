"""Shapley values of the regions of an intermediate feature map for the DNN's output (paper 002, Fig. 5).

The players are the regional features f^(r) of one layer; a coalition keeps its regions' features
and replaces the others by a baseline (0 by default: the region contributes no activation), and the
value is the DNN's output for the target class computed from that feature map. Captum's
`ShapleyValueSampling` (or `ShapleyValues`, all permutations, for a few regions) does the sampling;
the feature map is swapped into the network by a forward hook, so any layer of any model works.
"""

from __future__ import annotations

import torch
from captum.attr import ShapleyValues, ShapleyValueSampling
from torch import nn

from explainlab.errors import check_int
from explainlab.models.layers import ActivationRecorder, resolve_layers

from .image_regions import grid_shape, region_index_map


class RegionShapley:
    """φ^(r): Shapley value of every region of `layer` for the model's output (Captum-style).

    model: the classifier (inputs as it takes them); layer: dotted name of a conv layer inside it.
    max_side: regions are the cells of the grid the knowledge-point study pools the map to (at most
        max_side x max_side; None: every position is a region), so φ lines up with w of the same run.
    n_samples: random permutations per image (Captum's ShapleyValueSampling); None: exact Shapley
        values over all R! permutations (Captum's ShapleyValues, only for a handful of regions).
    baseline: value an absent region's features take. perturbations_per_eval: coalitions evaluated
        per forward pass (memory vs speed). seed: torch RNG seed for the permutations. progress:
        Captum's progress bar over the coalitions.
    """

    def __init__(self, model: nn.Module, layer: str, *, max_side: int | None = 8, n_samples: int | None = 25,
                 baseline: float = 0.0, perturbations_per_eval: int = 16, seed: int = 0,
                 progress: bool = False) -> None:  # fmt: skip
        self.model, self.layer = model, layer
        self.module = resolve_layers(model, [layer], key="layer")[layer]
        check_int("n_samples", n_samples, minimum=1, optional=True)
        check_int("perturbations_per_eval", perturbations_per_eval, minimum=1)
        self.max_side, self.n_samples, self.baseline = max_side, n_samples, baseline
        self.perturbations_per_eval, self.seed, self.progress = perturbations_per_eval, seed, progress

    def attribute(self, x: torch.Tensor, target: torch.Tensor | int) -> torch.Tensor:
        """x: (N, ...) inputs; target: class per image (N,) or one class. Returns φ (N, R), R = gh·gw,
        regions row-major; Σ_r φ^(r) = output(x) − output(all regions at the baseline) (efficiency).
        Captum accumulates the values in float32, whatever the model's dtype. Call it on a model in
        eval mode (batch statistics would mix the coalitions of one forward pass)."""
        with torch.no_grad(), ActivationRecorder(self.model, [self.layer]) as rec:
            self.model(x)
        fmap = rec.activations[self.layer]
        if fmap.dim() != 4:
            raise ValueError(f"{self.layer}: expected a conv feature map (N, K, H, W), got {tuple(fmap.shape)}")
        grid = grid_shape(tuple(fmap.shape[-2:]), self.max_side)
        mask = region_index_map(tuple(fmap.shape[-2:]), grid).to(fmap.device)[None, None]

        def forward(maps: torch.Tensor) -> torch.Tensor:
            copies = len(maps) // len(x)
            replace = self.module.register_forward_hook(lambda _m, _i, _o: maps)
            try:
                return self.model(x.repeat(copies, *[1] * (x.dim() - 1)))
            finally:
                replace.remove()

        target = torch.as_tensor(target, device=x.device)
        target = target.expand(len(x)) if target.dim() == 0 else target
        torch.manual_seed(self.seed)
        with torch.no_grad():
            if self.n_samples is None:
                attributions = ShapleyValues(forward).attribute(
                    fmap, baselines=self.baseline, target=target, feature_mask=mask,
                    perturbations_per_eval=self.perturbations_per_eval, show_progress=self.progress,
                )  # fmt: skip
            else:
                attributions = ShapleyValueSampling(forward).attribute(
                    fmap, baselines=self.baseline, target=target, feature_mask=mask, n_samples=self.n_samples,
                    perturbations_per_eval=self.perturbations_per_eval, show_progress=self.progress,
                )  # fmt: skip
        # Every position of a region carries the region's value: read one position per region.
        first = torch.zeros(grid[0] * grid[1], dtype=torch.long, device=mask.device)
        flat = mask.flatten()
        first.scatter_reduce_(0, flat, torch.arange(len(flat), device=flat.device), reduce="amin", include_self=False)
        return attributions[:, 0].flatten(1)[:, first]
