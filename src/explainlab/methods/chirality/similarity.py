"""Average kernel similarity of convolution layers (paper 000, Eq. 5-6) and the commutative
residual between an untrained and a trained model (Eq. 4)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pandas as pd
import torch
from torch import nn

from explainlab.models.layers import unwrap

log = logging.getLogger(__name__)


def flip_kernels(weight: torch.Tensor) -> torch.Tensor:
    """T(K): every channel of every kernel mirrored horizontally (W axis reversed, channel order kept).

    weight: (B, C, H, W) -> (B, C, H, W).
    """
    if weight.dim() != 4:
        raise ValueError(f"expected conv weights of shape (B, C, H, W), got {tuple(weight.shape)}")
    return weight.flip(-1)


def flippable_convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    """Conv layers whose kernels a horizontal flip changes (kernel width > 1), by dotted name inside
    the classifier (a `PixelSpaceModel` is unwrapped), in definition order. 1x1 (and k x 1) kernels
    are skipped: T is the identity on them, as the paper notes."""
    return {
        name: module
        for name, module in unwrap(model).named_modules()
        if isinstance(module, nn.Conv2d) and module.kernel_size[1] > 1
    }


@torch.no_grad()
def kernel_similarity(
    weight: torch.Tensor, *, flip: bool = True, dtype: torch.dtype | None = None, diagonal: bool = True
) -> tuple[torch.Tensor, int]:
    """S(L) = (1/B²) Σ_j Σ_j' |cos(K_j, T(K_j'))| for one layer, as one Gram-matrix product.

    weight: (B, C, H, W) on any device. flip=False gives the no-flip ablation (T = identity).
    dtype: computation dtype (default: the weight's, at least float32).
    diagonal=False: the mean over the B(B − 1) pairs j ≠ j' only (without the flip the j = j' terms
    are exactly 1, which alone moves S by (1 − their flipped mean) / B).
    Kernels that are exactly zero have no direction; they are left out (B counts the others).
    Returns (S as a 0-d tensor, number of kernels used).
    """
    if not torch.isfinite(weight).all():
        raise ValueError("conv weights contain NaN or inf; cannot compute kernel similarity")
    dtype = dtype or (weight.dtype if weight.dtype == torch.float64 else torch.float32)
    kernels = (flip_kernels(weight) if flip else weight).to(dtype).flatten(1)
    plain = weight.to(dtype).flatten(1)
    norms = plain.norm(dim=1)
    keep = norms > 0
    if not keep.all():
        plain, kernels, norms = plain[keep], kernels[keep], norms[keep]
    if len(norms) == 0:
        return torch.tensor(float("nan"), dtype=dtype, device=weight.device), 0
    # A permutation of coordinates keeps norms, so T(K_j) has the norm of K_j.
    unit, unit_t = plain / norms[:, None], kernels / norms[:, None]
    cosines = (unit @ unit_t.T).abs_()
    if diagonal:
        return cosines.mean(), len(norms)
    b = len(norms)
    if b < 2:
        return torch.tensor(float("nan"), dtype=dtype, device=weight.device), b
    return (cosines.sum() - cosines.diagonal().sum()) / (b * (b - 1)), b


class ChiralityProfile:
    """Per-layer average kernel similarity of a model (paper 000, Eq. 5), with and without the flip.

    device: where the products run (default: where the weights are).
    dtype: computation dtype (float32 default; float64 for exact checks).
    After `fit(model)`: `layers_` (names), `similarity_` and `similarity_noflip_` ((L,) float64
    tensors on the CPU), `kernels_` (kernels used per layer), `kernel_shapes_` ((C, H, W) per layer).
    """

    def __init__(self, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        self.device, self.dtype = device, dtype

    def fit(self, model: nn.Module) -> ChiralityProfile:
        convs = flippable_convs(model)
        if not convs:
            raise ValueError(f"{type(unwrap(model)).__name__} has no conv layer with a flippable (W > 1) kernel")
        return self.fit_weights({name: conv.weight for name, conv in convs.items()})

    def fit_weights(self, weights: Mapping[str, torch.Tensor]) -> ChiralityProfile:
        """Same as `fit`, from {layer name: (B, C, H, W) weight}."""
        flip, noflip, used, shapes = [], [], [], []
        for name, weight in weights.items():
            w = weight.detach().to(self.device) if self.device is not None else weight.detach()
            try:
                s, n = kernel_similarity(w, flip=True, dtype=self.dtype)
                s0, _ = kernel_similarity(w, flip=False, dtype=self.dtype)
            except ValueError as err:
                raise ValueError(f"layer {name}: {err}") from err
            if n < len(w):
                log.warning("layer %s: %d all-zero kernels left out of S", name, len(w) - n)
            flip.append(s)
            noflip.append(s0)
            used.append(n)
            shapes.append(tuple(w.shape[1:]))
        self.layers_ = list(weights)
        self.similarity_ = torch.stack(flip).double().cpu()
        self.similarity_noflip_ = torch.stack(noflip).double().cpu()
        self.kernels_ = used
        self.kernel_shapes_ = shapes
        return self

    def to_frame(self) -> pd.DataFrame:
        """One row per layer: layer, position (0-based), kernels, kernel_shape ('CxHxW'), similarity,
        similarity_noflip."""
        return pd.DataFrame(
            {
                "layer": self.layers_,
                "position": range(len(self.layers_)),
                "kernels": self.kernels_,
                "kernel_shape": ["x".join(map(str, s)) for s in self.kernel_shapes_],
                "similarity": self.similarity_.tolist(),
                "similarity_noflip": self.similarity_noflip_.tolist(),
            }
        )


def commutative_residual(untrained: ChiralityProfile, trained: ChiralityProfile) -> pd.DataFrame:
    """E(L) = |S(L) − S(Tr(L))| per layer (Eq. 4); E(M) is its sum. Both profiles must cover the same
    layers (same architecture). Returns columns layer, similarity_untrained, similarity_trained, E."""
    if untrained.layers_ != trained.layers_:
        raise ValueError(
            "profiles of different architectures: layers "
            f"{untrained.layers_[:4]}... vs {trained.layers_[:4]}... (compare a model with itself)"
        )
    return pd.DataFrame(
        {
            "layer": untrained.layers_,
            "similarity_untrained": untrained.similarity_.tolist(),
            "similarity_trained": trained.similarity_.tolist(),
            "E": (untrained.similarity_ - trained.similarity_).abs().tolist(),
        }
    )
