"""Hidden activation patterns as operands of cosine products: plain rows, or factored through the
input of an affine tap.

Library networks use HAPs only through cosines. When a tap is an affine module's raw output,
h = M y + β (a convolution or linear layer; y its input, β the broadcast bias), inner products of
outputs are inner products of much shorter vectors:

    ⟨h_i, h_j⟩ = y_i · Mᵀh_j + β · h_j = left_i · right_j,   left = [y, 1],   right = [Mᵀh, β·h].

This is an identity, not an approximation, and it pays whenever dim y + 1 < dim h: the MNIST
CNN's conv1 (785 instead of 21,632 dimensions), its conv2 (21,633 instead of 36,864), a CIFAR
ResNet's conv1 (3,073 instead of 16,384). Every product then takes queries (the samples being
compared, `left`) against keys (the stored nodes, `right`); for plain rows both are the same
unit vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

AFFINE_TAPS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_INPUT_GRAD = {
    nn.Conv1d: torch.nn.grad.conv1d_input,
    nn.Conv2d: torch.nn.grad.conv2d_input,
    nn.Conv3d: torch.nn.grad.conv3d_input,
}


@dataclass(frozen=True)
class FactoredHAPs:
    """HAPs of an affine tap held through the tap's input (see the module docstring).

    stacked: (N, 2, d + 1); [:, 0] is left = [y, 1] and [:, 1] is right = [Mᵀh, β·h], where y
        (d values) is the tap's flattened input and h its raw output. This single tensor is what
        caches, DDP gathers and slices hold.
    """

    stacked: torch.Tensor

    def __post_init__(self) -> None:
        if self.stacked.dim() != 3 or self.stacked.shape[1] != 2:
            raise ValueError(f"factored HAPs are (N, 2, d + 1); got shape {tuple(self.stacked.shape)}.")

    def __len__(self) -> int:
        return len(self.stacked)

    def __getitem__(self, index: slice | torch.Tensor) -> FactoredHAPs:
        return FactoredHAPs(self.stacked[index])

    def to(self, *args, **kwargs) -> FactoredHAPs:
        """Moved/cast like `torch.Tensor.to`."""
        return FactoredHAPs(self.stacked.to(*args, **kwargs))

    @property
    def dtype(self) -> torch.dtype:
        return self.stacked.dtype

    @property
    def device(self) -> torch.device:
        return self.stacked.device

    @property
    def dim(self) -> int:
        """Width of a query or key row, d + 1."""
        return self.stacked.shape[2]


Patterns = torch.Tensor | FactoredHAPs


def pattern_dim(haps: Patterns) -> int:
    """Width of the unit rows `unit_rows` returns for these patterns."""
    return haps.dim if isinstance(haps, FactoredHAPs) else math.prod(haps.shape[1:])


def compute_dtype(haps: Patterns) -> torch.dtype:
    """float32 or float64: products of float16/bfloat16 storage run in float32."""
    return haps.dtype if haps.dtype in (torch.float32, torch.float64) else torch.float32


def normalize_haps(haps: torch.Tensor, *, allow_zero: bool = False, what: str = "haps") -> torch.Tensor:
    """Rows flattened and L2-normalised, (N, D). All-zero rows are refused unless `allow_zero`,
    in which case they stay zero (cosine 0 to everything). NaN/inf rows are always refused."""
    flat = haps.reshape(len(haps), -1)
    norms = torch.linalg.vector_norm(flat, dim=1)  # NaN/inf in a row make its norm non-finite
    _check_norms(norms, allow_zero, what)
    return flat / norms.clamp_min(torch.finfo(flat.dtype).tiny).unsqueeze(1)


def _check_norms(norms: torch.Tensor, allow_zero: bool, what: str) -> None:
    if not torch.isfinite(norms).all():
        bad = (~torch.isfinite(norms)).nonzero().flatten()
        raise ValueError(f"{what} hold NaN or inf (or overflow) in {len(bad)} rows (first: {bad[:5].tolist()}).")
    zero = norms <= 0
    if not allow_zero and zero.any():
        idx = zero.nonzero().flatten()
        raise ValueError(
            f"{what} has {len(idx)} all-zero rows (first: {idx[:5].tolist()}); their cosine similarity "
            f"is undefined. Pass allow_zero=True to give them similarity 0 and never store them."
        )


def unit_rows(
    haps: Patterns,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    allow_zero: bool = False,
    what: str = "haps",
    queries: bool = True,
    keys: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(queries, keys), both (N, D) on `device` in `dtype` (default: `compute_dtype`), such that
    queries[i] · keys[j] is the cosine of patterns i and j. Plain rows: the same unit vectors
    twice. Factored: left and right divided by |h| = sqrt(left · right); `queries=False` or
    `keys=False` skips computing that side (None in its place). Zero patterns give zero rows (only
    with `allow_zero`); NaN/inf are refused."""
    dtype = dtype or compute_dtype(haps)
    if not isinstance(haps, FactoredHAPs):
        x = normalize_haps(haps.to(device=device, dtype=dtype), allow_zero=allow_zero, what=what)
        return x, x
    s = haps.stacked.to(device=device, dtype=dtype)
    left, right = s[:, 0], s[:, 1]
    squared = (left.unsqueeze(1) @ right.unsqueeze(2)).flatten()  # |h|²; h = 0 gives right = 0, so 0
    _check_norms(squared.clamp_max(torch.finfo(dtype).max), allow_zero, what)
    # 1/|h|, and 0 for zero patterns (zero rows, as for plain rows)
    scale = (squared.clamp_min(torch.finfo(dtype).tiny).rsqrt() * (squared > 0)).unsqueeze(1)
    return (left * scale if queries else None), (right * scale if keys else None)


def factorable(module: nn.Module, in_features: int, out_features: int) -> bool:
    """True when `module` is affine (linear or convolution) and factoring through its input
    shortens the rows (in_features + 1 < out_features)."""
    return isinstance(module, AFFINE_TAPS) and in_features + 1 < out_features


def affine_factors(module: nn.Module, inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Stacked factors (B, 2, d + 1) of an affine tap: left = [y, 1], right = [Mᵀh, β·h].

    inputs: y (B, ...), the module's input; outputs: h (B, ...), its raw output for y.
    Mᵀh is the vector-Jacobian product of the bias-free module (exact: the map is linear).
    """
    if not isinstance(module, AFFINE_TAPS):
        raise TypeError(f"{type(module).__name__} is not an affine tap ({', '.join(m.__name__ for m in AFFINE_TAPS)}).")
    y = inputs.detach()
    h = outputs.detach()
    weight = module.weight.detach()
    if isinstance(module, nn.Linear):
        transposed = h @ weight
    elif module.padding_mode == "zeros" and not isinstance(module.padding, str):
        # the convolution's input gradient: one transposed convolution, no second forward pass
        input_grad = next(grad for cls, grad in _CONV_INPUT_GRAD.items() if isinstance(module, cls))
        transposed = input_grad(y.shape, weight, h, module.stride, module.padding, module.dilation, module.groups)
    else:  # 'same' padding or non-zero padding modes: let autograd transpose the module's forward
        with torch.enable_grad():
            leaf = y.clone().requires_grad_(True)
            (transposed,) = torch.autograd.grad(module._conv_forward(leaf, weight, None), leaf, grad_outputs=h)
    if module.bias is None:
        bias_dot = h.new_zeros(len(h))
    elif isinstance(module, nn.Linear):  # bias on the last axis, whatever leading axes the input has
        bias_dot = (h * module.bias.detach()).flatten(1).sum(1)
    else:
        bias_dot = (h.flatten(2).sum(2) * module.bias.detach()).sum(1)
    left = torch.cat([y.flatten(1), y.new_ones(len(y), 1)], 1)
    right = torch.cat([transposed.flatten(1), bias_dot.unsqueeze(1)], 1)
    return torch.stack([left, right], 1)
