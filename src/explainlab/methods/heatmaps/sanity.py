"""Sanity checks of heat maps (Adebayo et al. 2018, "Sanity checks for saliency maps"; cited by paper
003): do the maps change when the model's parameters, or the labels it learnt, are randomised?

- Model-parameter randomisation: the layers are re-initialised from the top (the output) down,
  `cascading` (the top k layers, k = 1, 2, ...) or `independent` (only the k-th layer from the top).
  The randomised models are made lazily: one working copy, changed in place layer by layer (for
  `independent` the previous layer's parameters are put back first), never a deep copy per layer.
- Data randomisation: the maps of a model trained on the true labels against those of the same
  architecture trained on permuted labels (`permuted_labels`); the training is the caller's.
- Similarity of two maps (MEASURES): Spearman rank correlation of the signed maps and of their
  absolute values, SSIM and the Pearson correlation of their HOG descriptors (Adebayo et al.'s four).
  SSIM and HOG read each map min-max scaled to [0, 1]. A correlation with a constant map is
  undefined; it is reported as 0 (no association).

Quantus 0.6.0 implements the same test (`quantus.MPRT`); `quantus_adapter` runs it on this
project's methods and the tests check that both give the same numbers. This module exists because
Quantus recomputes every map once per similarity measure, randomises every module that has
`reset_parameters` (batch norms included, no choice), and reseeds the global RNG identically for
every layer (docs/heatmaps.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from skimage.feature import hog
from torch import nn

from explainlab.errors import check_choice, check_int
from explainlab.methods.heatmaps.similarity import ssim_pairs

ORDERS = ("cascading", "independent")
LAYER_KINDS = ("parameterised", "all")
MEASURES = ("spearman", "spearman_abs", "ssim", "hog")
# explain(model, images, target) -> {method: maps (N, H, W)}
MapsFunction = Callable[[nn.Module, torch.Tensor, torch.Tensor], Mapping[str, torch.Tensor]]


def randomisable_layers(model: nn.Module, kind: str = "parameterised") -> list[str]:
    """Names of the layers to randomise, bottom (input) to top (output), in definition order.

    kind: 'parameterised' (conv and linear layers, the project's default) or 'all' (every module with
    parameters of its own and a `reset_parameters`, batch norms included, as Quantus does)."""
    check_choice("layers", kind, LAYER_KINDS)
    names = []
    for name, module in model.named_modules():
        if kind == "parameterised":
            chosen = isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
        else:
            chosen = hasattr(module, "reset_parameters") and any(True for _ in module.parameters(recurse=False))
        if chosen:
            names.append(name)
    return names


def _reset(module: nn.Module, seed: int) -> None:
    """module.reset_parameters() with its own seed, leaving the global RNG streams as they were."""
    devices = sorted({p.device.index or 0 for p in module.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        module.reset_parameters()


def randomised_models(
    model: nn.Module,
    *,
    order: str = "cascading",
    layers: str | Sequence[str] = "parameterised",
    max_layers: int | None = None,
    seed: int = 0,
) -> Iterator[tuple[int, str, nn.Module]]:
    """Yield (step, layer, randomised model), step = 1, 2, ...: the top `step` layers re-initialised
    (cascading) or only the step-th layer from the top (independent), each layer with seed + step.

    layers: a kind of `randomisable_layers` or explicit layer names (bottom to top). The yielded
    model is one working copy in eval mode, changed in place between steps: use it (or copy it)
    before asking for the next step. `model` itself is never changed."""
    check_choice("order", order, ORDERS)
    names = randomisable_layers(model, layers) if isinstance(layers, str) else list(layers)
    check_int("max_layers", max_layers, minimum=1, optional=True)
    top_down = names[::-1][:max_layers]
    work: nn.Module | None = None
    saved: tuple[nn.Module, dict[str, torch.Tensor]] | None = None
    for step, name in enumerate(top_down, start=1):
        if work is None:
            work = copy.deepcopy(model).eval()
            missing = [n for n in names if n not in dict(work.named_modules())]
            if missing:
                raise ValueError(f"layers not in the model: {missing}")
        module = work.get_submodule(name)
        if order == "independent":
            if saved is not None:
                saved[0].load_state_dict(saved[1])
            saved = (module, {k: v.clone() for k, v in module.state_dict().items()})
        _reset(module, seed + step)
        yield step, name, work


def _ranks(maps: torch.Tensor) -> np.ndarray:
    return rankdata(maps.detach().flatten(1).double().cpu().numpy(), axis=1)


def _pearson(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """Row-wise Pearson correlation of (P, D) arrays; 0 where a row is constant."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    norm = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(norm > 0, (a * b).sum(1) / np.where(norm > 0, norm, 1), 0.0)
    return torch.from_numpy(r)


def spearman(a: torch.Tensor, b: torch.Tensor, *, absolute: bool = False) -> torch.Tensor:
    """Spearman rank correlation of each pair of maps (P, ...) x (P, ...) -> (P,) float64 (average
    ranks for ties, scipy.stats.rankdata); of |a| and |b| with `absolute`."""
    if absolute:
        a, b = a.abs(), b.abs()
    return _pearson(_ranks(a), _ranks(b))


def _unit_range(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.detach().flatten(1).double()
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-12)).view(maps.shape)


def hog_similarity(
    a: torch.Tensor, b: torch.Tensor, *, pixels_per_cell: int = 8, orientations: int = 9
) -> torch.Tensor:
    """Pearson correlation of the HOG descriptors (scikit-image, 3 x 3-cell blocks, L2-Hys) of each pair
    of 2-D maps (P, H, W), each min-max scaled to [0, 1] first: (P,) float64."""

    def descriptors(maps: torch.Tensor) -> np.ndarray:
        return np.stack([hog(m, orientations=orientations, pixels_per_cell=(pixels_per_cell, pixels_per_cell),
                             cells_per_block=(3, 3)) for m in _unit_range(maps).cpu().numpy()])  # fmt: skip

    if min(a.shape[-2:]) < 3 * pixels_per_cell:
        raise ValueError(f"maps of {tuple(a.shape[-2:])} are smaller than one HOG block of 3x{pixels_per_cell} pixels")
    return _pearson(descriptors(a), descriptors(b))


def compare_maps(
    a: torch.Tensor,
    b: torch.Tensor,
    measures: Sequence[str] = MEASURES,
    *,
    ssim_sigma: float = 1.5,
    ssim_window: int | None = None,
    ssim_gaussian: bool = True,
    hog_cell: int = 8,
) -> dict[str, torch.Tensor]:
    """Each of `measures` between the pairs of 2-D maps (P, H, W), (P, H, W): {measure: (P,)}. SSIM
    window: `similarity.ssim_pairs`' sigma / kernel_size / gaussian (default: Gaussian, σ = 1.5, 11 pixels)."""
    for measure in measures:
        check_choice("measures", measure, MEASURES)
    out = {}
    for measure in measures:
        if measure in ("spearman", "spearman_abs"):
            out[measure] = spearman(a, b, absolute=measure == "spearman_abs")
        elif measure == "ssim":
            out[measure] = ssim_pairs(_unit_range(a), _unit_range(b), sigma=ssim_sigma, kernel_size=ssim_window,
                                      gaussian=ssim_gaussian)
        else:
            out[measure] = hog_similarity(a, b, pixels_per_cell=hog_cell)
    return out


def _rows(reference: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor], measures: Sequence[str],
          key: dict, options: dict) -> list[dict]:  # fmt: skip
    rows = []
    for method, maps in reference.items():
        scores = compare_maps(maps, other[method], measures, **options)
        for measure, values in scores.items():
            rows += [key | {"method": method, "image": i, "measure": measure, "value": float(v)}
                     for i, v in enumerate(values)]  # fmt: skip
    return rows


def model_randomisation(
    model: nn.Module,
    images: torch.Tensor,
    target: torch.Tensor,
    explain: MapsFunction,
    *,
    order: str = "cascading",
    layers: str | Sequence[str] = "parameterised",
    max_layers: int | None = None,
    measures: Sequence[str] = MEASURES,
    seed: int = 0,
    reference: Mapping[str, torch.Tensor] | None = None,
    **options: float,
) -> pd.DataFrame:
    """Adebayo et al.'s model-parameter randomisation test.

    explain(model, images, target) -> {method: maps (N, H, W)}, called once for the trained model
    (unless `reference` gives its maps) and once per randomised model; target (N,) stays the trained
    model's. options: compare_maps' ssim_sigma, ssim_window, ssim_gaussian, hog_cell. Returns rows
    (order, step, layer, method, image, measure, value); step 0 is the trained model against itself."""
    trained = dict(reference) if reference is not None else dict(explain(model, images, target))
    rows = _rows(trained, trained, measures, {"order": order, "step": 0, "layer": ""}, options)
    for step, layer, randomised in randomised_models(model, order=order, layers=layers, max_layers=max_layers,
                                                     seed=seed):  # fmt: skip
        maps = explain(randomised, images, target)
        rows += _rows(trained, maps, measures, {"order": order, "step": step, "layer": layer}, options)
    return pd.DataFrame(rows)


def permuted_labels(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A random permutation of `labels` (N,) (Adebayo et al.'s data randomisation: the same label
    frequencies, no relation to the images)."""
    generator = torch.Generator().manual_seed(seed)
    return labels[torch.randperm(len(labels), generator=generator).to(labels.device)]


def data_randomisation(
    model: nn.Module,
    random_label_model: nn.Module,
    images: torch.Tensor,
    target: torch.Tensor,
    explain: MapsFunction,
    *,
    measures: Sequence[str] = MEASURES,
    reference: Mapping[str, torch.Tensor] | None = None,
    **options: float,
) -> pd.DataFrame:
    """Adebayo et al.'s data randomisation test: maps of `model` (trained on the true labels; `reference`
    gives them when already computed) against those of `random_label_model` (the same architecture
    trained on `permuted_labels`), for the same images and targets. Returns rows (method, image,
    measure, value)."""
    trained = dict(reference) if reference is not None else dict(explain(model, images, target))
    return pd.DataFrame(_rows(trained, explain(random_label_model, images, target), measures, {}, options))
