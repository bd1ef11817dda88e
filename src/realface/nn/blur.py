"""Differentiable separable Gaussian blur: the blur B of the paper's colour loss (kernel 13, σ = 10).

The kernel is ``g[i] ∝ exp(-½ (i / σ)²)`` for ``i = -(k-1)/2 … (k-1)/2``, normalised to sum 1, applied
along W and then along H (a separable correlation; the kernel is symmetric, so it equals a
convolution). Borders are padded with ``"reflect"`` by default (mirror without repeating the edge
pixel: ``… x2 x1 | x0 x1 x2 …``), the padding of ``torchvision.transforms.GaussianBlur``; ``"replicate"``
repeats the edge pixel. ``tests/nn/test_blur.py`` checks the result against ``scipy.ndimage``
(``mode="mirror"`` / ``"nearest"``) and against torchvision.

With σ = 10 and k = 13 the kernel is nearly flat (edge weight / centre weight = exp(-0.18) ≈ 0.84):
B is close to a 13 × 13 box filter, which is what makes the colour loss insensitive to detail.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["gaussian_kernel1d", "gaussian_blur", "GaussianBlur", "Padding"]

Padding = Literal["reflect", "replicate"]


def gaussian_kernel1d(
    kernel_size: int, sigma: float, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Normalised 1-D Gaussian taps ``[kernel_size]`` centred on the middle tap (``kernel_size`` odd)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"gaussian kernel_size must be a positive odd integer, got {kernel_size}")
    if not sigma > 0:
        raise ValueError(f"gaussian sigma must be positive, got {sigma}")
    half = (kernel_size - 1) / 2
    t = torch.linspace(-half, half, kernel_size, dtype=torch.float64)  # [k]
    g = torch.exp(-0.5 * (t / sigma) ** 2)  # [k]
    return (g / g.sum()).to(dtype=dtype, device=device)


def gaussian_blur(
    x: torch.Tensor, kernel_size: int = 13, sigma: float = 10.0, padding: Padding = "reflect"
) -> torch.Tensor:
    """Blur every channel of ``x`` with a separable Gaussian; output has the input's shape.

    Args:
        x: images ``[N, C, H, W]``, any value range, floating point. With ``"reflect"`` padding H and
            W must exceed ``kernel_size // 2``.
        kernel_size: odd number of taps per axis (default 13, the paper's colour loss).
        sigma: standard deviation in pixels (default 10.0, the paper's colour loss).
        padding: ``"reflect"`` (default) or ``"replicate"``, see the module docstring.

    Returns:
        ``[N, C, H, W]``, differentiable with respect to ``x``.
    """
    if x.ndim != 4:
        raise ValueError(f"gaussian_blur: expected images [N, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"gaussian_blur: expected a floating-point tensor, got {x.dtype}")
    if padding not in ("reflect", "replicate"):
        raise ValueError(f"gaussian_blur: padding must be 'reflect' or 'replicate', got {padding!r}")
    g = gaussian_kernel1d(kernel_size, sigma, dtype=x.dtype, device=x.device)  # [k]
    p = kernel_size // 2
    N, C, H, W = x.shape
    if p == 0:
        return x
    if padding == "reflect" and min(H, W) <= p:
        raise ValueError(
            f"gaussian_blur: reflect padding of {p} px needs H and W > {p}, got {H}x{W}; use a smaller "
            "kernel or padding='replicate'"
        )
    y = x.reshape(N * C, 1, H, W)  # [NC, 1, H, W]
    y = F.conv2d(F.pad(y, (p, p, 0, 0), mode=padding), g.view(1, 1, 1, -1))  # [NC, 1, H, W]
    y = F.conv2d(F.pad(y, (0, 0, p, p), mode=padding), g.view(1, 1, -1, 1))  # [NC, 1, H, W]
    return y.reshape(N, C, H, W)


class GaussianBlur(nn.Module):
    """Module form of :func:`gaussian_blur` (no parameters)."""

    def __init__(self, kernel_size: int = 13, sigma: float = 10.0, padding: Padding = "reflect"):
        super().__init__()
        gaussian_kernel1d(kernel_size, sigma)  # validates the arguments now
        self.kernel_size = kernel_size
        self.sigma = sigma
        self.padding: Padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(x, self.kernel_size, self.sigma, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, sigma={self.sigma}, padding={self.padding!r}"
