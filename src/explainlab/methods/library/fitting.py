"""Libraries of several layers and thresholds in one pass per layer, and the threshold sets CPL
combines them by (paper 001, Eqs. 1-2, Table 1): what the library and detection studies share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import torch

from explainlab.errors import ConfigValueError
from explainlab.methods.library.network import (
    HebbianSums,
    LibraryNetwork,
    MapUnits,
    _sequential,
    associate_libraries,
    build_libraries,
)
from explainlab.methods.library.patterns import Patterns

T = TypeVar("T")


def _here(work: Callable[[], T]) -> T:
    return work()


def fit_libraries(
    haps: Mapping[str, Patterns],
    thresholds: Mapping[str, Sequence[float]],
    logits: torch.Tensor,
    *,
    block_size: int = 4096,
    device: torch.device | str | None = None,
    progress: bool = False,
    map_units: Callable[[str], MapUnits] | None = None,
    once: Callable[[Callable[[], Any]], Any] = _here,
) -> dict[tuple[str, float], LibraryNetwork]:
    """{(layer, θ): LibraryNetwork} for every θ of `thresholds[layer]`, built in one construction
    pass per layer (Eq. 1) and linked with the DNN's answers argmax(logits) (Eq. 2).

    haps: {layer: (N, ...) patterns} in data set order; logits: (N, C).
    map_units(layer): how the Hebbian-link blocks of `layer` are spread (e.g. over DDP ranks);
        None = here, in order.
    once(work): runs the inherently sequential construction `work()` once and gives its result
        (over DDP: on rank 0, broadcast); by default here.
    """
    answers = logits.argmax(1)
    n_classes = logits.shape[1]
    kwargs = {"block_size": block_size, "device": device}
    out = {}
    for layer, values in thresholds.items():

        def construct(layer: str = layer, values: Sequence[float] = values) -> tuple[dict, HebbianSums]:
            sums = HebbianSums(answers, n_classes)
            return build_libraries(haps[layer], sorted(set(values)), progress=progress, hebbian=sums, **kwargs), sums

        indices, sums = once(construct)
        spread = map_units(layer) if map_units is not None else _sequential
        fitted = associate_libraries(haps[layer], indices, answers, n_classes, hebbian=sums, map_units=spread, **kwargs)
        out.update({(layer, t): lib for t, lib in fitted.items()})
    return out


def threshold_sets(
    sets: Mapping[str, Mapping[str, float]] | None, layers: Sequence[str], default: Iterable[float], *, key: str
) -> dict[str, dict[str, float]]:
    """{name: {layer: θ}}: `sets` checked to give one θ to each of `layers` (refused naming
    `<key>.<name>` otherwise), or, when `sets` is empty, one set 'theta=<θ>' per θ of `default`."""
    if not sets:
        return {f"theta={float(t):g}": dict.fromkeys(layers, float(t)) for t in default}
    out = {str(name): {str(layer): float(t) for layer, t in dict(chosen).items()} for name, chosen in sets.items()}
    for name, chosen in out.items():
        if set(chosen) != set(layers):
            raise ConfigValueError(f"{key}.{name}", chosen, f"one θ for each of {list(layers)}")
    return out


def thresholds_per_layer(
    common: float | Sequence[float] | None,
    per_layer: Mapping[str, float | Sequence[float]] | None,
    layers: Sequence[str],
    *,
    keys: tuple[str, str] = ("method.thresholds", "method.layer_thresholds"),
) -> dict[str, list[float]]:
    """{layer: θ list}: `common` (one θ or a list) for every layer, replaced by `per_layer[layer]` for
    the layers that mapping names. Refused, naming `keys` (common, per layer): a layer without any θ,
    a θ outside (-1, 1], a `per_layer` name that is not among `layers`."""
    per_layer = {str(k): v for k, v in dict(per_layer or {}).items()}
    unknown = sorted(set(per_layer) - set(layers))
    if unknown:
        raise ConfigValueError(keys[1], unknown, f"names among the studied layers {list(layers)}")
    listed = [] if common is None else [common] if isinstance(common, (int, float)) else list(common)
    if not listed and not set(layers) <= set(per_layer):
        raise ConfigValueError(keys[0], listed, "at least one cosine threshold in (-1, 1] (or method.threshold=θ)")
    out = {}
    for layer in layers:
        value = per_layer.get(layer, listed)
        out[layer] = [float(t) for t in ([value] if isinstance(value, (int, float)) else value)]
        for t in out[layer]:
            if not -1.0 < t <= 1.0:
                raise ConfigValueError(keys[0], t, f"a cosine threshold in (-1, 1] (layer {layer})")
    return out
