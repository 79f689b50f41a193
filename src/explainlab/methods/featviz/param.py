"""Image parameterisations for feature visualization (survey 004, Sec. 4; Olah et al. 2017):
raw pixels, a 1/f-scaled Fourier basis, colour decorrelation, and a squashing to [0, 1]."""

from __future__ import annotations

import torch
from torch import nn

# Square root of the colour correlation of ImageNet images (Olah et al.'s Lucid), rows = RGB.
COLOR_CORRELATION_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION_SQRT = COLOR_CORRELATION_SQRT / COLOR_CORRELATION_SQRT.norm(dim=0).max()


def frequency_scale(height: int, width: int, decay: float = 1.0) -> torch.Tensor:
    """1 / f^decay for the rfft2 frequencies of an H x W image, f floored at 1 / max(H, W): (H, W//2 + 1)."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    freq = (fy**2 + fx**2).sqrt()
    return 1.0 / freq.clamp_min(1.0 / max(height, width)) ** decay


def decorrelate(image: torch.Tensor) -> torch.Tensor:
    """Map decorrelated colour coordinates to RGB: (B, 3, H, W) -> (B, 3, H, W)."""
    return torch.einsum("ij,bjhw->bihw", COLOR_CORRELATION_SQRT.to(image), image)


def correlate(image: torch.Tensor) -> torch.Tensor:
    """Inverse of `decorrelate`."""
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(COLOR_CORRELATION_SQRT.double()).to(image), image)


class ImageParam(nn.Module):
    """A batch of images as learnable parameters; `forward()` returns (B, C, H, W) in [0, 1].

    param: 'pixel' (the image itself) or 'fourier' (the rfft2 spectrum, scaled by 1/f^decay, so
    gradient steps favour low frequencies). decorrelate: treat the 3 channels as decorrelated colour
    coordinates (RGB only). squash: 'sigmoid' or 'clamp' into [0, 1]. sd: initial scale. Seeded.
    """

    def __init__(self, batch: int, channels: int, height: int, width: int, *, param: str = "fourier",
                 decorrelate: bool = True, squash: str = "sigmoid", sd: float = 0.01, decay: float = 1.0,
                 seed: int = 0) -> None:  # fmt: skip
        super().__init__()
        if param not in ("pixel", "fourier"):
            raise ValueError(f"param must be 'pixel' or 'fourier', got {param!r}")
        if squash not in ("sigmoid", "clamp"):
            raise ValueError(f"squash must be 'sigmoid' or 'clamp', got {squash!r}")
        if decorrelate and channels != 3:
            raise ValueError("colour decorrelation needs 3-channel images")
        self.param, self.decorrelate, self.squash = param, decorrelate, squash
        self.shape = (batch, channels, height, width)
        g = torch.Generator().manual_seed(seed)
        if param == "pixel":
            self.values = nn.Parameter(sd * torch.randn(*self.shape, generator=g))
        else:
            self.register_buffer("scale", frequency_scale(height, width, decay))
            self.values = nn.Parameter(sd * torch.randn(batch, channels, height, width // 2 + 1, 2, generator=g))

    def raw(self) -> torch.Tensor:
        """The unsquashed image (B, C, H, W) in the (decorrelated) colour space."""
        if self.param == "pixel":
            return self.values
        spectrum = torch.view_as_complex(self.values) * self.scale
        return torch.fft.irfft2(spectrum, s=self.shape[-2:], norm="ortho")

    def forward(self) -> torch.Tensor:
        image = self.raw()
        if self.decorrelate:
            image = decorrelate(image)
        if self.squash == "sigmoid":
            return torch.sigmoid(image)
        return (image + 0.5).clamp(0, 1)

    @torch.no_grad()
    def set_image(self, image: torch.Tensor) -> None:
        """Set the parameters so that `raw()` equals `image` (B, C, H, W) (inverse of the basis)."""
        if self.param == "pixel":
            self.values.copy_(image)
            return
        spectrum = torch.fft.rfft2(image, norm="ortho") / self.scale
        self.values.copy_(torch.view_as_real(spectrum))
