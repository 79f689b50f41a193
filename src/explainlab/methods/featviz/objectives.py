"""Objectives for activation maximization (survey 004, Sec. 4): functions of the recorded layer
outputs and the logits, one score per image of the batch, combinable with + and *."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

Scores = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


class Objective:
    """score(activations {layer: (B, ...)}, logits (B, K)) -> (B,) to be maximised.

    layers: the layer outputs it reads. `a + b`, `a - b`, `w * a` combine objectives.
    """

    def __init__(self, score: Scores, layers: tuple[str, ...] = (), name: str = "") -> None:
        self.score, self.layers, self.name = score, tuple(dict.fromkeys(layers)), name

    def __call__(self, activations: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
        return self.score(activations, logits)

    def __add__(self, other: Objective) -> Objective:
        return Objective(lambda a, z: self(a, z) + other(a, z), self.layers + other.layers, f"{self.name}+{other.name}")

    def __sub__(self, other: Objective) -> Objective:
        return self + (-1.0) * other

    def __rmul__(self, weight: float) -> Objective:
        return Objective(lambda a, z: weight * self(a, z), self.layers, f"{weight}*{self.name}")


def channel(layer: str, index: int) -> Objective:
    """Mean activation of one channel over all positions (a 'feature' in Olah et al.'s terms)."""
    return Objective(lambda a, z: a[layer][:, index].flatten(1).mean(1), (layer,), f"{layer}:{index}")


def neuron(layer: str, index: int, y: int | None = None, x: int | None = None) -> Objective:
    """One unit: channel `index` at position (y, x) (default: the centre); for flat layers, unit `index`."""

    def score(a: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        act = a[layer]
        if act.dim() == 2:
            return act[:, index]
        h, w = act.shape[-2:]
        return act[:, index, h // 2 if y is None else y, w // 2 if x is None else x]

    return Objective(score, (layer,), f"{layer}:{index}@{y},{x}")


def deepdream(layer: str) -> Objective:
    """The whole layer: mean of squared activations (DeepDream)."""
    return Objective(lambda a, z: a[layer].pow(2).flatten(1).mean(1), (layer,), f"{layer}:dream")


def logit(index: int) -> Objective:
    """A class logit (pre-softmax, as the survey recommends over the probability)."""
    return Objective(lambda a, z: z[:, index], (), f"logit:{index}")


def probability(index: int) -> Objective:
    """A class probability (softmax); tends to lower the other classes instead of raising this one."""
    return Objective(lambda a, z: z.softmax(1)[:, index], (), f"prob:{index}")


def direction(layer: str, vector: torch.Tensor) -> Objective:
    """Dot product of each position's activation vector with `vector` (C,), averaged over positions."""

    def score(a: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        act = a[layer]
        v = vector.to(act)
        if act.dim() == 2:
            return act @ v
        return torch.einsum("bchw,c->bhw", act, v).flatten(1).mean(1)

    return Objective(score, (layer,), f"{layer}:direction")


def gram_cosines(activations: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarities (B, B) of the flattened channel Gram matrices of (B, C, H, W)."""
    flat = activations.flatten(2)
    gram = torch.einsum("bcn,bdn->bcd", flat, flat).flatten(1)
    gram = torch.nn.functional.normalize(gram, dim=1)
    return gram @ gram.T


def diversity(layer: str) -> Objective:
    """Negative mean pairwise cosine of the batch's Gram matrices at `layer` (Olah et al.): pushes the
    images of one batch to differ in style. The same value is given to every image."""

    def score(a: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        cos = gram_cosines(a[layer])
        b = len(cos)
        mean = (cos.sum() - cos.diagonal().sum()) / max(b * (b - 1), 1)
        return (-mean).expand(b)

    return Objective(score, (layer,), f"{layer}:diversity")


def logsumexp(indices: list[int] | None = None, temperature: float = 1.0) -> Objective:
    """T · log Σ_i exp(z_i / T) over the chosen logits (all when None): a smooth maximum of them, between
    max_i z_i and max_i z_i + T log n."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")

    def score(a: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        chosen = z if indices is None else z[:, list(indices)]
        return temperature * torch.logsumexp(chosen / temperature, dim=1)

    return Objective(score, (), f"logsumexp:{'all' if indices is None else ','.join(map(str, indices))}")


def log_probability(index: int) -> Objective:
    """z_index − LogSumExp(z): the log of the softmax probability written with the LogSumExp of the
    logits (survey 004, Sec. 2.2.2: "optimize the LogSumExp of the logits instead", the tractable form
    of optimising the softmax)."""
    return Objective(lambda a, z: z[:, index] - torch.logsumexp(z, dim=1), (), f"logprob:{index}")


def interpolate(start: Objective, end: Objective) -> Objective:
    """Olah et al.'s interpolation: image b of a batch of B maximises (1 − t_b)·start + t_b·end with
    t_b = b / (B − 1), from `start` alone (b = 0) to `end` alone (b = B − 1). Use with a shared
    parameterisation (`visualize(..., shared=True)`) and `alignment` so the images line up."""

    def score(a: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        first, last = start(a, z), end(a, z)
        t = torch.linspace(0, 1, len(first), device=first.device, dtype=first.dtype) if len(first) > 1 else first * 0
        return (1 - t) * first + t * last

    return Objective(score, start.layers + end.layers, f"interpolate({start.name},{end.name})")


def alignment(layer: str, decay_ratio: float = 2.0, max_offset: int = 4) -> Objective:
    """−Σ_{d=1..max_offset} Σ_b mean((act_b − act_{b+d})²) / decay_ratio^d at `layer` (Lucid's alignment
    objective): neighbouring images of an interpolation batch are pushed to have similar activations.
    The same value is given to every image."""

    def score(a: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        act = a[layer].flatten(1)
        total = act.new_zeros(())
        for d in range(1, min(max_offset, len(act) - 1) + 1):
            total = total + (act[:-d] - act[d:]).pow(2).mean(1).sum() / decay_ratio**d
        return (-total).expand(len(act))

    return Objective(score, (layer,), f"{layer}:alignment")


CLASS_OBJECTIVES = ("logit", "probability", "log_probability")


def from_target(target: Mapping[str, Any], class_objective: str = "logit") -> tuple[Objective, str]:
    """The objective and label of a target spec: {layer, channel} (`channel`), {class} (`class_objective`
    of that class: 'logit', 'probability' or 'log_probability') or {classes: [..]} (`logsumexp` of those
    logits: a smooth maximum, an image of any of them). Labels: 'layer:channel', 'class:c', 'classes:a,b'."""
    if class_objective not in CLASS_OBJECTIVES:
        raise ValueError(f"class_objective must be one of {', '.join(CLASS_OBJECTIVES)}, got {class_objective!r}")
    if set(target) == {"layer", "channel"}:
        return channel(str(target["layer"]), int(target["channel"])), f"{target['layer']}:{target['channel']}"
    if set(target) == {"class"}:
        index = int(target["class"])
        make = {"logit": logit, "probability": probability, "log_probability": log_probability}[class_objective]
        return make(index), f"class:{index}"
    if set(target) == {"classes"} and len(target["classes"]) >= 1:
        indices = [int(c) for c in target["classes"]]
        return logsumexp(indices), "classes:" + ",".join(map(str, indices))
    raise ValueError(f"a target is {{layer, channel}}, {{class}} or {{classes: [..]}}, got {dict(target)}")
