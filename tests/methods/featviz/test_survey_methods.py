"""Survey 004's feature-visualization pieces against their definitions: the Fourier basis' 1/f scale,
colour decorrelation estimated from data, the bilateral filter, LogSumExp objectives, interpolation
with shared parameters and alignment, Mahendran & Vedaldi's inversion with the α-norm."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explainlab.methods.featviz import (
    ImageParam,
    alignment,
    alpha_norm,
    bilateral_filter,
    channel,
    color_correlation_sqrt,
    decorrelate,
    frequency_scale,
    interpolate,
    invert,
    log_probability,
    logit,
    logsumexp,
    tv_beta,
    visualize,
)


@pytest.mark.parametrize(("h", "w"), [(8, 8), (7, 10)])
def test_frequency_scale_is_one_over_f(h: int, w: int) -> None:
    got = frequency_scale(h, w, decay=1.5)
    for ky in range(h):
        for kx in range(w // 2 + 1):
            fy = (ky if ky < (h + 1) // 2 else ky - h) / h  # numpy's fftfreq ordering
            f = math.hypot(fy, kx / w)
            assert got[ky, kx].item() == pytest.approx(1 / max(f, 1 / max(h, w)) ** 1.5, rel=1e-6)


def test_fourier_image_has_amplitude_coefficient_over_f() -> None:
    """|rfft2(image, ortho)| = |c| · s(f): with unit coefficients the amplitude spectrum is 1/f."""
    param = ImageParam(2, 3, 12, 12, param="fourier", decorrelate=False, squash="none", sd=1.0, seed=4)
    spectrum = torch.fft.rfft2(param.raw().detach().double(), norm="ortho")
    coefficients = torch.view_as_complex(param.values.detach().double())
    interior = slice(1, 12 // 2)  # columns whose coefficients have no Hermitian partner in the half spectrum
    assert torch.allclose(spectrum[..., interior], (coefficients * frequency_scale(12, 12).double())[..., interior],
                          atol=1e-5)  # fmt: skip
    shared = ImageParam(2, 3, 12, 12, param="fourier", decorrelate=False, shared=True, seed=1)
    target = torch.rand(2, 3, 12, 12)
    shared.set_image(target)
    assert torch.allclose(shared.raw(), target, atol=1e-5) and shared.shared_values.abs().sum() > 0


def test_colour_decorrelation_estimated_from_data() -> None:
    """Pixels drawn with a planted RGB covariance Σ: L Lᵀ ∝ Σ for the Cholesky (lower triangular) and
    the SVD root, and decorrelating white noise gives colours with covariance ∝ Σ."""
    sigma = torch.tensor([[0.06, 0.05, 0.04], [0.05, 0.06, 0.05], [0.04, 0.05, 0.07]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    pixels = torch.linalg.cholesky(sigma) @ torch.randn(3, 64 * 32 * 32, generator=g, dtype=torch.float64)
    images = (pixels.view(3, 64, 32, 32).permute(1, 0, 2, 3) + 0.5).float()
    for method in ("cholesky", "svd"):
        root = color_correlation_sqrt(images, method).double()
        product = root @ root.T
        assert torch.allclose(product / product[0, 0], sigma / sigma[0, 0], atol=0.02), method
        assert root.norm(dim=0).max().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(color_correlation_sqrt(images).triu(1), torch.zeros(3, 3))
    noise = torch.randn(1, 3, 256, 256, generator=g)
    colours = decorrelate(noise, color_correlation_sqrt(images)).flatten(2)[0].double()
    cov = colours.cov()
    assert torch.allclose(cov / cov[0, 0], sigma / sigma[0, 0], atol=0.03)
    with pytest.raises(ValueError, match="RGB"):
        color_correlation_sqrt(torch.rand(2, 1, 8, 8))


def _bilateral_by_loop(image: torch.Tensor, size: int, sigma_space: float, sigma_color: float) -> torch.Tensor:
    """Each output pixel: Σ_q g(q − p) exp(−d(p, q)² / 2σ_c²) I(q) / Σ_q (...), g the normalised Gaussian
    of σ_space over the window, d the L1 colour difference; reflected borders (float64)."""
    c, h, w = image.shape
    r = size // 2
    padded = F.pad(image[None], (r, r, r, r), mode="reflect")[0]
    axis = torch.arange(-r, r + 1, dtype=torch.float64)
    gauss = torch.exp(-(axis[:, None] ** 2 + axis[None] ** 2) / (2 * sigma_space**2))
    out = torch.empty_like(image)
    for y in range(h):
        for x in range(w):
            window = padded[:, y : y + size, x : x + size]
            distance = (window - image[:, y, x, None, None]).abs().sum(0)
            weight = gauss * torch.exp(-(distance**2) / (2 * sigma_color**2))
            out[:, y, x] = (window * weight).sum((1, 2)) / weight.sum()
    return out


def test_bilateral_filter_equals_its_definition_and_keeps_edges() -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 7, 9, generator=g, dtype=torch.float64)
    got = bilateral_filter(image, sigma_space=1.0, sigma_color=0.3, size=5)
    assert torch.allclose(got[0], _bilateral_by_loop(image[0], 5, 1.0, 0.3), atol=1e-10)
    edge = torch.zeros(1, 1, 16, 16)
    edge[..., 8:] = 1.0
    noisy = edge + 0.05 * torch.randn(1, 1, 16, 16, generator=g)
    smoothed = bilateral_filter(noisy, sigma_space=1.5, sigma_color=0.2)
    blurred = bilateral_filter(noisy, sigma_space=1.5, sigma_color=100.0)  # range term ~1: a Gaussian blur
    assert (smoothed - edge).abs().mean() < (noisy - edge).abs().mean()
    assert (smoothed - edge).abs().mean() < 0.5 * (blurred - edge).abs().mean()


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()  # fmt: skip


def test_logsumexp_objectives() -> None:
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(log_probability(2)({}, z), z.log_softmax(1)[:, 2])
    lse = logsumexp([0, 3], temperature=0.5)({}, z)
    top = z[:, [0, 3]].amax(1)
    assert torch.all(lse >= top) and torch.all(lse <= top + 0.5 * math.log(2))
    assert torch.allclose(logsumexp()({}, z), torch.logsumexp(z, 1))
    result = visualize(_net(), log_probability(1), shape=(1, 3, 12, 12), steps=20, device="cpu")
    assert result.trace[-1] > result.trace[0]


def test_interpolation_weights_and_alignment_by_definition() -> None:
    acts = {"a": torch.randn(5, 3, 2, 2, generator=torch.Generator().manual_seed(1))}
    z = torch.randn(5, 4)
    mixed = interpolate(logit(0), logit(1))(acts, z)
    t = torch.linspace(0, 1, 5)
    assert torch.allclose(mixed, (1 - t) * z[:, 0] + t * z[:, 1]) and mixed[0] == z[0, 0] and mixed[-1] == z[-1, 1]
    flat = acts["a"].flatten(1)
    expected = -sum(((flat[i] - flat[i + d]) ** 2).mean() / 2.0**d for d in range(1, 5) for i in range(5 - d))
    assert torch.allclose(alignment("a")(acts, z), torch.full((5,), float(expected)))


def test_shared_parameterisation_and_alignment_line_images_up() -> None:
    net = _net()
    objective = interpolate(channel("2", 0), channel("2", 1))
    kwargs = dict(shape=(4, 3, 12, 12), steps=40, device="cpu", seed=2)
    plain = visualize(net, objective, **kwargs)
    aligned = visualize(net, objective + 5.0 * alignment("0"), shared=True, **kwargs)

    def neighbour_distance(images: torch.Tensor) -> float:
        with torch.no_grad():
            acts = net[0](images).flatten(1)
        return float((acts[1:] - acts[:-1]).pow(2).mean())

    assert neighbour_distance(aligned.images) < neighbour_distance(plain.images)


def test_alpha_norm_and_tv_beta_by_definition() -> None:
    x = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.4 - 0.2
    expected = [sum(((v - 0.5) / 0.5) ** 6 for v in x[b].flatten().tolist()) / 60 for b in range(2)]
    assert alpha_norm(x).tolist() == pytest.approx(expected)
    tv = []
    for b in range(2):
        total = 0.0
        for c in range(3):
            for i in range(3):
                for j in range(4):
                    dx, dy = x[b, c, i, j + 1] - x[b, c, i, j], x[b, c, i + 1, j] - x[b, c, i, j]
                    total += float(((dx**2 + dy**2) / 0.25) ** 1.5)
        tv.append(total / 36)
    assert tv_beta(x, beta=3).tolist() == pytest.approx(tv)
    with pytest.raises(ValueError, match="alpha"):
        alpha_norm(x, alpha=0.5)


def test_inversion_recovers_an_invertible_layer_and_several_starts_reveal_invariance() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    image = torch.zeros(1, 3, 10, 10)
    image[..., 2:8, 3:6] = torch.tensor([0.9, 0.2, 0.6]).view(1, 3, 1, 1)
    first = invert(net, "0", image, starts=3, steps=300, lr=0.05, tv_weight=0.0, alpha_weight=1e-4, device="cpu")
    assert first.images.shape == (3, 3, 10, 10) and (first.loss < 1e-3).all()
    assert ((first.images - image).abs().mean((1, 2, 3)) < 0.05).all()
    pooled = invert(net, "2", image, starts=3, steps=300, lr=0.05, tv_weight=0.0, device="cpu")
    assert (pooled.loss < 1e-2).all()  # every start matches the pooled representation ...
    spread = (pooled.images[0] - pooled.images[1]).abs().mean()
    assert spread > 0.05  # ... with different images: global pooling forgets where things are
    unbounded = visualize(net, channel("0", 0), shape=(1, 3, 10, 10), param="pixel", squash="none", steps=150,
                          lr=0.1, device="cpu", decorrelate=False)  # fmt: skip
    bounded = visualize(net, channel("0", 0), shape=(1, 3, 10, 10), param="pixel", squash="none", steps=150,
                        lr=0.1, device="cpu", decorrelate=False, penalties=[(10.0, alpha_norm)])  # fmt: skip
    assert unbounded.trace[-1] > bounded.trace[-1]  # the α-norm holds the pixels back
