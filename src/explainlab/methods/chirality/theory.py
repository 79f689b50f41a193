"""What S(L) is for an untrained layer: its expectation when the B kernels are i.i.d. isotropic
Gaussian vectors of dimension d = C·H·W (kaiming/xavier/normal initialisation; paper 000, Fig. 4).

Off the diagonal (j ≠ j'), K_j and T(K_j') are independent isotropic vectors, so cos has the density
∝ (1 − u²)^((d−3)/2) and E|cos| = Γ(d/2) / (√π Γ((d+1)/2)) ≈ sqrt(2 / (π d)).

On the diagonal, T permutes coordinates: f = C·H·(W mod 2) stay fixed (the middle column) and
p = C·H·⌊W/2⌋ pairs swap. Rotating each pair to (u, v) = ((a+b)/√2, (a−b)/√2) gives
cos(K, T K) = (F + U − V) / (F + U + V) = 1 − 2β with F ~ χ²_f, U, V ~ χ²_p, so β ~ Beta(p/2, (f+p)/2).
For odd W the diagonal terms sit near f/d (1/3 for 3x3 kernels), for even W near 0.

Cosines do not see the scale of a kernel, so every zero-mean Gaussian initialisation (any std,
fan-in or fan-out) gives the same distribution of S: the initialisation cannot matter.
"""

from __future__ import annotations

import math

from scipy import special, stats


def expected_abs_cos(dim: int) -> float:
    """E|cos(x, y)| for independent isotropic x, y in R^dim (exact)."""
    if dim < 2:
        raise ValueError(f"dim must be >= 2, got {dim}")
    return math.exp(special.gammaln(dim / 2) - special.gammaln((dim + 1) / 2)) / math.sqrt(math.pi)


def expected_abs_cos_flip(channels: int, height: int, width: int) -> float:
    """E|cos(K, T(K))| for one isotropic Gaussian kernel of shape (C, H, W), T the horizontal flip (exact)."""
    if width < 2:
        raise ValueError(f"a kernel of width {width} is unchanged by the flip")
    pairs = channels * height * (width // 2)
    fixed = channels * height * (width % 2)
    a, b = pairs / 2, (fixed + pairs) / 2
    # E|1 − 2β| = 1 − 2E[β] + 4 E[(β − ½)⁺], and E[β·1{β>½}] = a/(a+b) · P(Beta(a+1, b) > ½).
    mean = a / (a + b)
    upper = mean * stats.beta.sf(0.5, a + 1, b) - 0.5 * stats.beta.sf(0.5, a, b)
    return 1 - 2 * mean + 4 * upper


def expected_similarity(kernels: int, channels: int, height: int, width: int, *, flip: bool = True) -> float:
    """E[S(L)] of a layer of `kernels` i.i.d. isotropic Gaussian kernels of shape (C, H, W):
    (1/B)·E(diagonal) + (1 − 1/B)·E|cos| over independent pairs."""
    dim = channels * height * width
    diagonal = expected_abs_cos_flip(channels, height, width) if flip else 1.0
    return diagonal / kernels + (1 - 1 / kernels) * expected_abs_cos(dim)
