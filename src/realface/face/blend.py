"""Paste an aligned face back into the full image: colour match, inverse warp, feathered composite.

Only the face's region of interest is touched: the mask's support in the aligned frame is mapped to
the image, that box is cropped, warped and composited, and every pixel where the warped mask is 0
keeps its exact input value (same dtype, no round trip through float). Work therefore grows with
the face's size, not with the image's. Alpha channels are never modified.

Frames and conventions as in :mod:`realface.face.align` (pixel centres at integer coordinates;
``aligned_from_image`` maps image pixels to aligned pixels).

The composite is the paper's ``x = m̂ · x_res + (1 − m̂) · x`` with ``m̂`` the eroded and feathered
mask. Colour correction (on by default) matches the new face's mean and standard deviation in CIE
Lab, channel by channel, to those of the original face over the mask's statistics region (skin for
the parsing mask, the eroded face region for the landmark mask), computed on the ``R``-pixel mask
grid and applied to the whole aligned face before it is warped.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from realface.face.align import Alignment, sample_bilinear
from realface.face.mask import FaceMask

__all__ = [
    "BlendConfig",
    "paste_face",
    "LabTransfer",
    "rgb_to_lab",
    "lab_to_rgb",
    "face_roi",
    "mask_in_image",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BlendConfig:
    """Options of :func:`paste_face`.

    Attributes:
        color_correct: match the new face's Lab mean/std to the original face. Default True.
        min_stats_pixels: colour correction is skipped (with a warning) when the statistics region
            has fewer mask-grid pixels than this. Default 64.
    """

    color_correct: bool = True
    min_stats_pixels: int = 64


# sRGB (D65) <-> CIE Lab, in numpy float64. Matrix from the sRGB primaries (IEC 61966-2-1).
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_XYZN_FROM_RGB = _RGB_TO_XYZ / _WHITE[:, None]  # linear sRGB -> XYZ divided by the white point
_RGB_FROM_XYZN = np.linalg.inv(_XYZN_FROM_RGB)
_EPS = 216.0 / 24389.0
_KAPPA = 24389.0 / 27.0


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] ``[..., 3]`` → CIE Lab (D65) ``[..., 3]`` float64 (L in [0, 100])."""
    c = np.asarray(rgb, dtype=np.float64)
    lin = np.where(c <= 0.04045, c / 12.92, ((np.maximum(c, 0) + 0.055) / 1.055) ** 2.4)  # [..., 3]
    xyz = lin @ _XYZN_FROM_RGB.T  # [..., 3]
    f = np.where(xyz > _EPS, np.cbrt(np.maximum(xyz, _EPS)), (_KAPPA * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) ``[..., 3]`` → sRGB ``[..., 3]`` float64 (not clipped)."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)  # [..., 3]
    xyz = np.where(f**3 > _EPS, f**3, (116 * f - 16) / _KAPPA)
    lin = xyz @ _RGB_FROM_XYZN.T  # [..., 3]
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.maximum(lin, 0) ** (1 / 2.4) - 0.055)


@dataclasses.dataclass(frozen=True)
class LabTransfer:
    """Per-channel affine map in CIE Lab: ``lab' = (lab − src_mean) · gain + dst_mean``."""

    src_mean: tuple[float, float, float]
    gain: tuple[float, float, float]
    dst_mean: tuple[float, float, float]

    @classmethod
    def fit(cls, new_samples: np.ndarray, ref_samples: np.ndarray) -> LabTransfer:
        """The map taking the Lab mean/std of ``new_samples`` ``[K, 3]`` RGB to those of ``ref_samples``.

        The gain is limited to [0.25, 4] so that a nearly flat region cannot blow up the contrast.
        """
        lab_n, lab_r = rgb_to_lab(new_samples), rgb_to_lab(ref_samples)  # [K, 3]
        gain = np.clip(lab_r.std(0) / np.maximum(lab_n.std(0), 1e-3), 0.25, 4.0)

        def as_triple(t: np.ndarray) -> tuple[float, float, float]:
            return float(t[0]), float(t[1]), float(t[2])

        return cls(as_triple(lab_n.mean(0)), as_triple(gain), as_triple(lab_r.mean(0)))

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Reference path: exact per-pixel transfer of RGB ``[..., 3]`` in [0, 1]; result clipped to [0, 1]."""
        lab = (rgb_to_lab(rgb) - self.src_mean) * np.asarray(self.gain) + self.dst_mean  # [..., 3]
        return np.clip(lab_to_rgb(lab), 0.0, 1.0)

    def apply_lut(self, rgb: torch.Tensor, size: int = 48) -> torch.Tensor:
        """Fast path: :meth:`apply` tabulated on a ``size``³ grid, trilinear lookup.

        The grid is uniform in ``sqrt(rgb)`` so that it is denser in the shadows, where the sRGB and
        Lab curves bend most. ``rgb`` ``[3, H, W]`` float32 in [0, 1] → ``[3, H, W]``. Agrees with
        :meth:`apply` to within one 8-bit level (``tests/face/test_blend.py``).
        """
        g = np.linspace(0.0, 1.0, size) ** 2  # [S] node values
        b_, g_, r_ = np.meshgrid(g, g, g, indexing="ij")  # [S, S, S] each: depth=B, rows=G, cols=R
        table = self.apply(np.stack([r_, g_, b_], -1))  # [S, S, S, 3]
        table_t = torch.from_numpy(table.astype(np.float32)).permute(3, 0, 1, 2)[None]  # [1, 3, S, S, S]
        grid = (rgb.clamp(0.0, 1.0).sqrt().permute(1, 2, 0) * 2.0 - 1.0)[None, None]  # [1, 1, H, W, 3]
        out = F.grid_sample(table_t, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return out[0, :, 0]  # [3, H, W]


def face_roi(alignment: Alignment, mask: FaceMask) -> tuple[int, int, int, int] | None:
    """Image box ``(x0, y0, x1, y1)`` (end-exclusive) covering the mask's support, or None if empty."""
    rows = np.flatnonzero(mask.alpha.any(axis=1))
    cols = np.flatnonzero(mask.alpha.any(axis=0))
    if rows.size == 0:
        return None
    n, r = alignment.output_size, mask.resolution
    lo = (np.array([cols[0], rows[0]]) - 1.0 + 0.5) * (n / r) - 0.5  # aligned coords, one mask px margin
    hi = (np.array([cols[-1], rows[-1]]) + 1.0 + 0.5) * (n / r) - 0.5
    corners = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], hi[1]], [hi[0], lo[1]], [1.0, 1.0]])
    m = alignment.image_from_aligned
    img_pts = corners[:4] @ m[:2, :2].T + m[:2, 2]  # [4, 2]
    w, h = alignment.image_size
    x0 = max(int(math.floor(img_pts[:, 0].min())) - 1, 0)
    y0 = max(int(math.floor(img_pts[:, 1].min())) - 1, 0)
    x1 = min(int(math.ceil(img_pts[:, 0].max())) + 2, w)
    y1 = min(int(math.ceil(img_pts[:, 1].max())) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma as Pillow's RGB→L conversion, ``[3, h, w]`` → ``[1, h, w]``."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype).view(3, 1, 1)
    return (rgb * w).sum(0, keepdim=True)


def paste_face(
    pixels: np.ndarray,
    face: np.ndarray,
    alignment: Alignment,
    mask: FaceMask,
    config: BlendConfig | None = None,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Composite an aligned face into an image, touching only the face's region.

    Args:
        pixels: the original colour channels ``[H, W, C]`` (``C`` = 1 or 3), uint8 or uint16.
        face: the new aligned face ``[N, N, 3]`` float32 RGB in [0, 1]; ``N`` may differ from
            ``alignment.output_size`` (the same crop at another resolution).
        alignment: where the aligned crop came from (its ``image_size`` must be ``(W, H)``).
        mask: :class:`FaceMask` in the aligned frame.
        config: :class:`BlendConfig`.
        out: array to write into (may be ``pixels`` itself for an in-place paste); default a copy.

    Returns:
        ``out`` (or a new array): equal to ``pixels`` bit for bit wherever the warped mask is 0.
    """
    config = config or BlendConfig()
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3) or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixels must be [H, W, 1|3] uint8/uint16; got {pixels.shape} {pixels.dtype}")
    if face.ndim != 3 or face.shape[2] != 3 or face.shape[0] != face.shape[1]:
        raise ValueError(f"face must be a square RGB crop [N, N, 3]; got {face.shape}")
    h, w = pixels.shape[:2]
    if tuple(alignment.image_size) != (w, h):
        raise ValueError(f"alignment is for a {alignment.image_size} image; got one of {(w, h)}")
    if out is None:
        out = pixels.copy()
    elif out.shape != pixels.shape or out.dtype != pixels.dtype:
        raise ValueError(f"out must be {pixels.shape} {pixels.dtype}; got {out.shape} {out.dtype}")
    n = face.shape[0]
    if n != alignment.output_size:
        alignment = alignment.resized(n)
    roi = face_roi(alignment, mask)
    if roi is None:
        logger.warning("the face mask is empty; the image is left unchanged")
        return out
    x0, y0, x1, y1 = roi
    peak = float(np.iinfo(pixels.dtype).max)
    new = torch.from_numpy(np.ascontiguousarray(face, dtype=np.float32)).permute(2, 0, 1)  # [3, N, N]

    alpha = _roi_grid_sample(torch.from_numpy(mask.alpha)[None], alignment, roi, mask.resolution, "zeros")[0]
    sel = alpha >= 1.0 / 1024  # [h, w] pixels that change; all others are never written
    if not bool(sel.any()):
        return out
    pts_al = _roi_aligned_points(alignment, roi)[sel]  # [K, 2] aligned (u, v) of the changed pixels
    warped = sample_bilinear(new, pts_al[None])[:, 0]  # [3, K]
    region = out[y0:y1, x0:x1]  # view into the output
    sel_np = sel.numpy()
    orig = pixels[y0:y1, x0:x1][sel_np].astype(np.float32) / peak  # [K, C]
    if config.color_correct:
        transfer = _fit_color(new, pixels, alignment, mask, config)
        if transfer is not None:
            warped = transfer.apply_lut(warped[:, None])[:, 0]  # [3, K]
    if orig.shape[1] == 1:
        warped = _luma(warped[:, None])[:, 0]  # [1, K]
    a = alpha[sel].numpy()[:, None]  # [K, 1]
    blended = orig + a * (warped.T.numpy() - orig)  # [K, C]
    region[sel_np] = np.clip(np.rint(blended * peak), 0, peak).astype(pixels.dtype)
    return out


def _roi_affine(alignment: Alignment, roi: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """``theta`` for ``affine_grid``: ROI normalised coords → normalised coords of a ``size`` grid
    covering the aligned square (pixel centres at integers, ``align_corners=False``)."""
    x0, y0, x1, y1 = roi
    w, h = x1 - x0, y1 - y0
    n = alignment.output_size
    # ROI normalised (xn, yn) -> image pixel (x, y): x = x0 + ((xn + 1) * w - 1) / 2
    img_from_norm = np.array([[w / 2, 0, x0 + (w - 1) / 2], [0, h / 2, y0 + (h - 1) / 2], [0, 0, 1]])
    # aligned pixel -> grid normalised: g = (2 * (a + 0.5) * size / n) / size - 1 = (2a + 1) / n - 1
    norm_from_al = np.array([[2 / n, 0, 1 / n - 1], [0, 2 / n, 1 / n - 1], [0, 0, 1]])
    theta = norm_from_al @ alignment.matrix @ img_from_norm  # [3, 3]
    return torch.from_numpy(theta[:2]).float()[None]  # [1, 2, 3]


def _roi_grid_sample(
    src: torch.Tensor, alignment: Alignment, roi: tuple[int, int, int, int], size: int, padding: str
) -> torch.Tensor:
    """Sample ``src`` ``[C, size, size]`` (a grid over the aligned square) at every ROI pixel: ``[C, h, w]``."""
    x0, y0, x1, y1 = roi
    grid = F.affine_grid(_roi_affine(alignment, roi, size), [1, 1, y1 - y0, x1 - x0], align_corners=False)
    out = F.grid_sample(src[None], grid, mode="bilinear", padding_mode=padding, align_corners=False)
    return out[0]


def _roi_aligned_points(alignment: Alignment, roi: tuple[int, int, int, int]) -> torch.Tensor:
    """Aligned pixel coordinates ``[h, w, 2]`` (float32) of every ROI pixel."""
    x0, y0, x1, y1 = roi
    m = torch.from_numpy(alignment.matrix).float()  # [3, 3] aligned_from_image
    xs = torch.arange(x0, x1, dtype=torch.float32)
    ys = torch.arange(y0, y1, dtype=torch.float32)
    u = m[0, 0] * xs[None, :] + m[0, 1] * ys[:, None] + m[0, 2]  # [h, w]
    v = m[1, 0] * xs[None, :] + m[1, 1] * ys[:, None] + m[1, 2]  # [h, w]
    return torch.stack([u, v], -1)  # [h, w, 2]


def mask_in_image(alignment: Alignment, mask: FaceMask) -> np.ndarray:
    """The feathered mask as :func:`paste_face` applies it, in the full image frame ``[H, W]`` float32.

    Meant for inspection and tests (it allocates a full-size array); zero outside the face's ROI.
    """
    w, h = alignment.image_size
    full = np.zeros((h, w), dtype=np.float32)
    roi = face_roi(alignment, mask)
    if roi is not None:
        x0, y0, x1, y1 = roi
        alpha = _roi_grid_sample(
            torch.from_numpy(mask.alpha)[None], alignment, roi, mask.resolution, "zeros"
        )[0]
        alpha[alpha < 1.0 / 1024] = 0.0
        full[y0:y1, x0:x1] = alpha.numpy()
    return full


def _sample_zero_pad(src: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``src`` ``[C, H, W]`` at ``points`` ``[h, w, 2]``, zero outside."""
    _, hh, ww = src.shape
    grid = torch.empty_like(points, dtype=torch.float32)
    grid[..., 0] = (points[..., 0] + 0.5) * (2.0 / ww) - 1.0
    grid[..., 1] = (points[..., 1] + 0.5) * (2.0 / hh) - 1.0
    return F.grid_sample(src[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def _fit_color(
    new: torch.Tensor, pixels: np.ndarray, alignment: Alignment, mask: FaceMask, config: BlendConfig
) -> LabTransfer | None:
    """Lab transfer taking the new face ``[3, N, N]`` to the original's colours, on the mask grid.

    The statistics pixels of the ``R``-pixel mask grid are sampled in the new face (area-averaged to
    ``R``) and, bilinearly, in the original image at the same aligned positions.
    """
    n, r = new.shape[1], mask.resolution
    stats = torch.from_numpy(mask.stats)  # [R, R]
    count = int(stats.sum())
    if count < config.min_stats_pixels:
        logger.warning("colour correction skipped: only %d statistics pixels", count)
        return None
    idx = torch.nonzero(stats)  # [K, 2] (row, col) in the mask grid
    al = (idx.flip(1).double() + 0.5) * (n / r) - 0.5  # [K, 2] aligned (u, v)
    m = torch.from_numpy(alignment.image_from_aligned)
    img = al @ m[:2, :2].T + m[:2, 2]  # [K, 2] image (x, y)
    h, w = pixels.shape[:2]
    lo = torch.floor(img.min(0).values).clamp(min=0).long()
    hi = torch.ceil(img.max(0).values).long() + 2
    box = pixels[int(lo[1]) : min(int(hi[1]), h), int(lo[0]) : min(int(hi[0]), w)]  # [bh, bw, C]
    src = torch.from_numpy(np.ascontiguousarray(box)).permute(2, 0, 1).float() / float(
        np.iinfo(box.dtype).max
    )
    src = src.expand(3, -1, -1) if src.shape[0] == 1 else src  # [3, bh, bw]
    ref = sample_bilinear(src, (img - lo.double())[None])[:, 0].T  # [K, 3]
    small = F.interpolate(new[None], size=(r, r), mode="area")[0] if n != r else new  # [3, R, R]
    new_samples = small[:, idx[:, 0], idx[:, 1]].T  # [K, 3]
    transfer = LabTransfer.fit(new_samples.double().numpy(), ref.double().numpy())
    logger.debug("colour correction %s", transfer)
    return transfer
