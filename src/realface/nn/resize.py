"""Area downsampling of image batches, the resize used before the perceptual and identity losses.

The official StyleGAN2-ADA projector (``projector.py``, reference/stylegan2-ada.md §A5) shrinks
images larger than 256 px with ``F.interpolate(mode="area")`` before LPIPS; the paper downsamples to
512 px for the sketch loss and to 256 px for the colour loss. :func:`area_downsample` does that and
nothing else: it never upsamples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["area_downsample"]


def area_downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Shrink ``x`` with area averaging so that its longer side is ``size``; smaller inputs pass unchanged.

    Args:
        x: images ``[N, C, H, W]`` (any value range, any float dtype).
        size: the longest side allowed, in pixels (> 0).

    Returns:
        ``x`` itself when ``max(H, W) <= size``; otherwise ``[N, C, H', W']`` with
        ``max(H', W') == size`` and the aspect ratio kept (the shorter side rounded, at least 1).
        For integer factors (1024 → 256) area averaging is an exact box filter (mean of each block).
        Differentiable.
    """
    if x.ndim != 4:
        raise ValueError(f"area_downsample: expected images [N, C, H, W], got shape {tuple(x.shape)}")
    if size <= 0:
        raise ValueError(f"area_downsample: size must be positive, got {size}")
    H, W = x.shape[-2:]
    if max(H, W) <= size:
        return x
    scale = size / max(H, W)
    out_hw = (max(1, round(H * scale)), max(1, round(W * scale)))
    return F.interpolate(x, size=out_hw, mode="area")  # [N, C, H', W']
