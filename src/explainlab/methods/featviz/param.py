"""Image parameterisations for feature visualization (survey 004, Sec. 2.2.5; Olah et al. 2017):
raw pixels, a 1/f-scaled Fourier basis, colour decorrelation, and a squashing to [0, 1].

The Fourier basis: the image is irfft2(c · s, norm="ortho") of learnt complex coefficients c, with
s(f) = 1 / max(f, 1/max(H, W))^decay at the spatial frequency f (cycles per pixel) of each
coefficient. With the orthonormal transform the image's amplitude spectrum is |c| · s: a coefficient
of size 1 gives amplitude 1/f (decay 1), the spectrum of natural images, so every frequency gets the
same share of the gradient steps ("whitened"). This equals Lucid's `fft_image` (which multiplies s
by sqrt(H W) and uses the unnormalised inverse) apart from its final division by 4.

Colour decorrelation (survey: "we explicitly measure the correlation between colors in the training
set and use a Cholesky decomposition to decorrelate them"): the three channels are learnt in
coordinates with identity covariance and mapped to RGB by a square root L of the data set's RGB
covariance (L Lᵀ = Σ), scaled so its largest column has norm 1 (as Lucid does).
`color_correlation_sqrt(images)` estimates it from the data set in use; the default is Lucid's
ImageNet matrix.
"""

from __future__ import annotations

import torch
from torch import nn

# Square root of the colour correlation of ImageNet images (Olah et al.'s Lucid), rows = RGB.
COLOR_CORRELATION_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION_SQRT = COLOR_CORRELATION_SQRT / COLOR_CORRELATION_SQRT.norm(dim=0).max()
SQUASHES = ("sigmoid", "clamp", "none")


def color_covariance(images: torch.Tensor) -> torch.Tensor:
    """RGB covariance (3, 3) float64 of all pixels of `images` (N, 3, H, W) (population covariance)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"colour statistics need RGB images (N, 3, H, W), got {tuple(images.shape)}")
    pixels = images.detach().double().permute(1, 0, 2, 3).flatten(1)
    centred = pixels - pixels.mean(1, keepdim=True)
    return centred @ centred.T / pixels.shape[1]


def color_correlation_sqrt(images: torch.Tensor, method: str = "cholesky") -> torch.Tensor:
    """A square root L (3, 3) of the RGB covariance Σ of `images` (N, 3, H, W), L Lᵀ = Σ, scaled so its
    largest column norm is 1: 'cholesky' (the survey's recipe; lower triangular) or 'svd' (Lucid's
    U sqrt(S)). Use as `ImageParam(..., color_matrix=L)`. float32."""
    if method not in ("cholesky", "svd"):
        raise ValueError(f"method must be 'cholesky' or 'svd', got {method!r}")
    cov = color_covariance(images)
    if method == "cholesky":
        root = torch.linalg.cholesky(cov)
    else:
        u, s, _ = torch.linalg.svd(cov)
        root = u * s.sqrt()
    return (root / root.norm(dim=0).max()).float()


def frequency_scale(height: int, width: int, decay: float = 1.0) -> torch.Tensor:
    """s(f) = 1 / max(f, 1/max(H, W))^decay for the rfft2 frequencies of an H x W image: (H, W//2 + 1).

    f = sqrt(fy² + fx²) in cycles per pixel, fy = ky / H for ky in [−H/2, H/2), fx = kx / W for
    kx in [0, W/2]; the floor keeps the constant term (f = 0) finite, at the lowest frequency's scale."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    freq = (fy**2 + fx**2).sqrt()
    return 1.0 / freq.clamp_min(1.0 / max(height, width)) ** decay


def decorrelate(image: torch.Tensor, matrix: torch.Tensor | None = None) -> torch.Tensor:
    """Map decorrelated colour coordinates to RGB with `matrix` (3, 3) (default ImageNet's):
    (B, 3, H, W) -> (B, 3, H, W)."""
    matrix = COLOR_CORRELATION_SQRT if matrix is None else matrix
    return torch.einsum("ij,bjhw->bihw", matrix.to(image), image)


def correlate(image: torch.Tensor, matrix: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse of `decorrelate`."""
    matrix = COLOR_CORRELATION_SQRT if matrix is None else matrix
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(matrix.double()).to(image), image)


class ImageParam(nn.Module):
    """A batch of images as learnable parameters; `forward()` returns (B, C, H, W).

    param: 'pixel' (the image itself) or 'fourier' (the rfft2 spectrum, scaled by 1/f^decay, so
    gradient steps favour low frequencies; module docstring). decorrelate: treat the 3 channels as
    decorrelated colour coordinates (RGB only), mapped to RGB by `color_matrix` (3, 3) (default
    ImageNet's; `color_correlation_sqrt` estimates one from a data set). squash: 'sigmoid' or
    'clamp' into [0, 1], or 'none' (raw + 0.5, unbounded: for model inversion with an α-norm
    regulariser). shared: add one component common to the whole batch (Olah et al.'s shared
    parameterisation for interpolations: images that can line up). sd: initial scale. Seeded: each
    image of the batch starts from its own random draw.
    """

    def __init__(self, batch: int, channels: int, height: int, width: int, *, param: str = "fourier",
                 decorrelate: bool = True, squash: str = "sigmoid", sd: float = 0.01, decay: float = 1.0,
                 seed: int = 0, color_matrix: torch.Tensor | None = None, shared: bool = False) -> None:  # fmt: skip
        super().__init__()
        if param not in ("pixel", "fourier"):
            raise ValueError(f"param must be 'pixel' or 'fourier', got {param!r}")
        if squash not in SQUASHES:
            raise ValueError(f"squash must be one of {', '.join(SQUASHES)}, got {squash!r}")
        if decorrelate and channels != 3:
            raise ValueError("colour decorrelation needs 3-channel images")
        if color_matrix is not None and tuple(color_matrix.shape) != (3, 3):
            raise ValueError(f"color_matrix must be (3, 3), got {tuple(color_matrix.shape)}")
        self.param, self.decorrelate, self.squash = param, decorrelate, squash
        self.shape = (batch, channels, height, width)
        matrix = COLOR_CORRELATION_SQRT if color_matrix is None else color_matrix.detach().float()
        self.register_buffer("color_matrix", matrix.clone())
        g = torch.Generator().manual_seed(seed)
        if param == "pixel":
            self.values = nn.Parameter(sd * torch.randn(*self.shape, generator=g))
        else:
            self.register_buffer("scale", frequency_scale(height, width, decay))
            self.values = nn.Parameter(sd * torch.randn(batch, channels, height, width // 2 + 1, 2, generator=g))
        self.shared_values = nn.Parameter(sd * torch.randn(1, *self.values.shape[1:], generator=g)) if shared else None

    def _basis(self, values: torch.Tensor) -> torch.Tensor:
        if self.param == "pixel":
            return values
        spectrum = torch.view_as_complex(values.contiguous()) * self.scale
        return torch.fft.irfft2(spectrum, s=self.shape[-2:], norm="ortho")

    def raw(self) -> torch.Tensor:
        """The unsquashed image (B, C, H, W) in the (decorrelated) colour space."""
        values = self.values if self.shared_values is None else self.values + self.shared_values
        return self._basis(values)

    def forward(self) -> torch.Tensor:
        image = self.raw()
        if self.decorrelate:
            image = decorrelate(image, self.color_matrix)
        if self.squash == "sigmoid":
            return torch.sigmoid(image)
        if self.squash == "clamp":
            return (image + 0.5).clamp(0, 1)
        return image + 0.5

    @torch.no_grad()
    def set_image(self, image: torch.Tensor) -> None:
        """Set the parameters so that `raw()` equals `image` (B, C, H, W) (inverse of the basis; a shared
        component is kept and the per-image parameters take the rest)."""
        if self.param == "pixel":
            values = image
        else:
            values = torch.view_as_real(torch.fft.rfft2(image, norm="ortho") / self.scale)
        if self.shared_values is not None:
            values = values - self.shared_values
        self.values.copy_(values)
