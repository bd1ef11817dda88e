"""FFHQ alignment from 68 dlib landmarks, with the transform recorded so that it can be inverted.

Reproduces ``recreate_aligned_images`` of NVlabs/ffhq-dataset (``download_ffhq.py``): the oriented
square ``quad`` from eyes and mouth, the pre-shrink of large faces, the crop with a 10 % border, the
reflect padding with blur and median fill for faces near the image border, and the ``QUAD`` warp.

Coordinate convention (used by the whole ``realface.face`` package):
    **pixel centres are at integer coordinates** in every frame. Pixel ``(row i, column j)`` covers
    ``[j - 0.5, j + 0.5] × [i - 0.5, i + 0.5]``; points are ``(x, y)`` = (column, row). dlib landmarks
    are in this convention already.

The official warp calls Pillow's ``transform(QUAD, quad + 0.5)``. Pillow samples output pixel ``u``
at ``data + (u + 0.5) / size`` and its bilinear filter puts pixel centres at ``+0.5``; the two
``0.5`` shifts cancel on the source side, so in our convention aligned pixel ``(u, v)`` of an
``N``-pixel crop samples the image at::

    p = TL + (TR - TL) · (u + 0.5) / N + (BL - TL) · (v + 0.5) / N

i.e. the quad's corners lie on the outer edges of the aligned image. ``aligned_from_image`` is the
inverse of this affine map, as a 3×3 matrix acting on homogeneous ``(x, y, 1)`` column vectors.
Proof that this is exact: ``tests/face/test_align.py`` reproduces the official crops bit for bit with
``transform_size=4096`` and to > 45 dB PSNR with the default fast warp.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "AlignConfig",
    "Alignment",
    "AlignedFace",
    "ffhq_quad",
    "aligned_from_quad",
    "align_face",
    "apply_transform",
]

logger = logging.getLogger(__name__)

OUTPUT_SIZES = (256, 512, 1024)
QUAD_CORNERS = ("top-left", "bottom-left", "bottom-right", "top-right")


@dataclasses.dataclass(frozen=True)
class AlignConfig:
    """Options of :func:`align_face`.

    Attributes:
        output_size: side of the aligned square crop, one of 256, 512, 1024. Default 1024.
        transform_size: ``None`` (default) for the fast warp: a bilinear warp sampled at least as
            densely as the source pixels and at least twice per output pixel, then a Lanczos
            reduction to ``output_size``. An integer (the official value is 4096) selects the
            reference route, Pillow's bilinear ``QUAD`` warp to that size followed by a Lanczos
            resize, which reproduces the official crops exactly for 8-bit RGB input.
        enable_padding: reflect-pad, blur and fill the crop where the quad leaves the image, as the
            official recipe does. Default True.
    """

    output_size: int = 1024
    transform_size: int | None = None
    enable_padding: bool = True

    def __post_init__(self) -> None:
        if self.output_size not in OUTPUT_SIZES:
            raise ValueError(f"output_size must be one of {OUTPUT_SIZES}; got {self.output_size}")
        if self.transform_size is not None and self.transform_size < self.output_size:
            raise ValueError(
                f"transform_size must be >= output_size ({self.output_size}); got {self.transform_size}"
            )


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The official oriented crop square from 68 landmarks.

    Args:
        landmarks: ``[68, 2]`` dlib points ``(x, y)`` in image pixels.

    Returns:
        ``quad`` ``[4, 2]`` float64 corners in the order top-left, bottom-left, bottom-right,
        top-right (image pixels, centres at integers), and ``qsize``, the quad's side length.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2); got {lm.shape}")
    eye_left = lm[36:42].mean(axis=0)  # [2]
    eye_right = lm[42:48].mean(axis=0)  # [2]
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]  # [2] direction of the crop's x axis
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]  # [2] x rotated by +90°: the crop's y axis
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])  # [4, 2]
    return quad, float(np.hypot(*x) * 2)


def image_from_quad(quad: np.ndarray, size: int) -> np.ndarray:
    """3×3 ``image_from_aligned`` map of a quad for an aligned square of ``size`` pixels."""
    q = np.asarray(quad, dtype=np.float64)
    tl, bl, tr = q[0], q[1], q[3]
    ex, ey = (tr - tl) / size, (bl - tl) / size  # image step per aligned pixel along u and v
    origin = tl + 0.5 * ex + 0.5 * ey  # image position of aligned pixel (0, 0)
    return np.array([[ex[0], ey[0], origin[0]], [ex[1], ey[1], origin[1]], [0.0, 0.0, 1.0]])


def aligned_from_quad(quad: np.ndarray, size: int) -> np.ndarray:
    """3×3 ``aligned_from_image`` matrix: image pixel ``(x, y, 1)`` → aligned pixel ``(u, v, 1)``.

    Both frames put pixel centres at integer coordinates; see the module docstring.
    """
    return np.linalg.inv(image_from_quad(quad, size))


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3×3 affine/projective matrix to points ``[..., 2]``."""
    p = np.asarray(points, dtype=np.float64)
    h = p @ matrix[:2, :2].T + matrix[:2, 2]  # [..., 2]
    if np.allclose(matrix[2], [0.0, 0.0, 1.0]):
        return h
    w = p @ matrix[2, :2] + matrix[2, 2]  # [...]
    return h / w[..., None]


@dataclasses.dataclass(frozen=True)
class Alignment:
    """Where an aligned crop came from.

    Attributes:
        quad: ``((x, y), ...)`` four corners TL, BL, BR, TR in image pixels (centres at integers).
        output_size: side of the aligned square in pixels.
        image_size: ``(width, height)`` of the source image (after EXIF orientation).
        aligned_from_image: 3×3 matrix mapping image pixel ``(x, y, 1)`` to aligned pixel
            ``(u, v, 1)`` for this ``output_size``; both frames have pixel centres at integers.
    """

    quad: tuple[tuple[float, float], ...]
    output_size: int
    image_size: tuple[int, int]
    aligned_from_image: tuple[tuple[float, float, float], ...]

    @classmethod
    def from_quad(cls, quad: np.ndarray, output_size: int, image_size: tuple[int, int]) -> Alignment:
        q = np.asarray(quad, dtype=np.float64)
        if q.shape != (4, 2):
            raise ValueError(f"quad must have shape (4, 2); got {q.shape}")
        m = aligned_from_quad(q, output_size)
        return cls(
            quad=tuple((float(x), float(y)) for x, y in q),
            output_size=int(output_size),
            image_size=(int(image_size[0]), int(image_size[1])),
            aligned_from_image=tuple((float(row[0]), float(row[1]), float(row[2])) for row in m),
        )

    @property
    def quad_array(self) -> np.ndarray:
        return np.array(self.quad, dtype=np.float64)  # [4, 2]

    @property
    def matrix(self) -> np.ndarray:
        """``aligned_from_image`` as a ``[3, 3]`` float64 array."""
        return np.array(self.aligned_from_image, dtype=np.float64)

    @property
    def image_from_aligned(self) -> np.ndarray:
        return np.linalg.inv(self.matrix)

    @property
    def qsize(self) -> float:
        q = self.quad_array
        return float(np.hypot(*(q[3] - q[0])))

    def resized(self, output_size: int) -> Alignment:
        """The same crop described for an aligned image of another size."""
        return Alignment.from_quad(self.quad_array, output_size, self.image_size)

    def to_dict(self) -> dict:
        return {
            "quad_tl_bl_br_tr": [list(p) for p in self.quad],
            "output_size": self.output_size,
            "image_size": list(self.image_size),
            "aligned_from_image": [list(r) for r in self.aligned_from_image],
            "convention": "pixel centres at integer coordinates; aligned = M @ (x, y, 1)",
        }

    @classmethod
    def from_dict(cls, d: dict) -> Alignment:
        out = cls.from_quad(np.asarray(d["quad_tl_bl_br_tr"], float), int(d["output_size"]), d["image_size"])
        stored = np.asarray(d["aligned_from_image"], dtype=np.float64)
        if stored.shape != (3, 3) or not np.allclose(stored, out.matrix, rtol=1e-9, atol=1e-6):
            raise ValueError("aligned_from_image does not match quad and output_size")
        return out


@dataclasses.dataclass(frozen=True, eq=False)
class AlignedFace:
    """An aligned crop ``image`` ``[N, N, 3]`` float32 RGB in [0, 1] and its :class:`Alignment`."""

    image: np.ndarray
    alignment: Alignment

    def to_uint8(self) -> np.ndarray:
        return np.clip(np.rint(self.image * 255.0), 0, 255).astype(np.uint8)  # [N, N, 3]


def _crop_box(quad: np.ndarray, border: int, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0 = (int(math.floor(v)) for v in quad.min(axis=0))
    x1, y1 = (int(math.ceil(v)) for v in quad.max(axis=0))
    return max(x0 - border, 0), max(y0 - border, 0), min(x1 + border, width), min(y1 + border, height)


def _pad_amounts(quad: np.ndarray, border: int, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0 = (int(math.floor(v)) for v in quad.min(axis=0))
    x1, y1 = (int(math.ceil(v)) for v in quad.max(axis=0))
    return (
        max(-x0 + border, 0),
        max(-y0 + border, 0),
        max(x1 - width + border, 0),
        max(y1 - height + border, 0),
    )


def _pad_blur(img: np.ndarray, pad: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """Official border treatment: reflect pad, blur towards the pad, then fade to the median colour.

    ``img`` ``[h, w, 3]`` float32; ``pad`` ``(left, top, right, bottom)``, each > 0.
    """
    pl, pt, pr, pb = pad
    img = np.pad(img, ((pt, pb), (pl, pr), (0, 0)), mode="reflect")  # [H, W, 3]
    h, w, _ = img.shape
    y, x, _ = np.ogrid[:h, :w, :1]
    mask = np.maximum(
        1.0 - np.minimum(np.float32(x) / pl, np.float32(w - 1 - x) / pr),
        1.0 - np.minimum(np.float32(y) / pt, np.float32(h - 1 - y) / pb),
    )  # [H, W, 1]
    blur = qsize * 0.02
    img += (scipy.ndimage.gaussian_filter(img, [blur, blur, 0]) - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    return img


def _prepare_source(
    img: np.ndarray, quad: np.ndarray, qsize: float, enable_padding: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Crop (and pad if needed) the source around the quad. Returns the region and the quad in it."""
    height, width = img.shape[:2]
    border = max(int(np.rint(qsize * 0.1)), 3)
    x0, y0, x1, y1 = _crop_box(quad, border, width, height)
    if x1 - x0 < width or y1 - y0 < height:
        img = img[y0:y1, x0:x1]
        quad = quad - [x0, y0]
    pad = _pad_amounts(quad, border, img.shape[1], img.shape[0])
    if enable_padding and max(pad) > border - 4:
        p0, p1, p2, p3 = (int(v) for v in np.maximum(pad, int(np.rint(qsize * 0.3))))
        pad = (p0, p1, p2, p3)
        img = _pad_blur(img.astype(np.float32), pad, qsize)
        quad = quad + [pad[0], pad[1]]
    return img, quad


def _align_reference(rgb8: np.ndarray, quad: np.ndarray, qsize: float, config: AlignConfig) -> np.ndarray:
    """The official route on 8-bit RGB with Pillow (shrink, crop, pad, QUAD to transform_size, resize)."""
    out_size, transform_size = config.output_size, config.transform_size
    assert transform_size is not None
    pil = Image.fromarray(rgb8, "RGB")
    quad = quad.copy()
    shrink = int(np.floor(qsize / out_size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(pil.size[0] / shrink)), int(np.rint(pil.size[1] / shrink)))
        pil = pil.resize(rsize, Image.Resampling.LANCZOS)
        quad /= shrink
        qsize /= shrink
    region, quad = _prepare_source(np.asarray(pil), quad, qsize, config.enable_padding)
    if region.dtype != np.uint8:  # padded: back to 8 bits as the official code does
        region = np.clip(np.rint(region), 0, 255).astype(np.uint8)
    pil = Image.fromarray(np.ascontiguousarray(region), "RGB")
    pil = pil.transform(
        (transform_size, transform_size),
        Image.Transform.QUAD,
        [float(v) for v in (quad + 0.5).flatten()],
        Image.Resampling.BILINEAR,
    )
    if out_size < transform_size:
        pil = pil.resize((out_size, out_size), Image.Resampling.LANCZOS)
    return np.asarray(pil, dtype=np.float32) / 255.0  # [N, N, 3]


def sample_bilinear(src: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``src`` ``[C, H, W]`` at pixel coordinates ``points`` ``[h, w, 2]`` (x, y).

    Pixel centres at integers; points outside the image take the nearest edge value.
    Returns ``[C, h, w]``.
    """
    _, H, W = src.shape
    grid = torch.empty_like(points, dtype=torch.float32)  # [h, w, 2]
    grid[..., 0] = (points[..., 0] + 0.5) * (2.0 / W) - 1.0
    grid[..., 1] = (points[..., 1] + 0.5) * (2.0 / H) - 1.0
    out = F.grid_sample(src[None], grid[None], mode="bilinear", padding_mode="border", align_corners=False)
    return out[0]  # [C, h, w]


def _lanczos_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Lanczos resize of a float image ``[h, w, C]`` to ``[size, size, C]`` (Pillow, per channel)."""
    return np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(img[..., c])).resize(
                    (size, size), Image.Resampling.LANCZOS
                )
            )
            for c in range(img.shape[2])
        ],
        axis=-1,
    )  # [size, size, C]


def _align_fast(rgb: np.ndarray, quad: np.ndarray, qsize: float, config: AlignConfig) -> np.ndarray:
    """Fast route: crop/pad as the official recipe (no pre-shrink), one bilinear warp, Lanczos reduce."""
    n = config.output_size
    region, quad = _prepare_source(rgb, quad, qsize, config.enable_padding)
    ratio = qsize / n  # source pixels per output pixel
    k = max(1, math.ceil(2 * ratio)) if ratio <= 1 else math.ceil(ratio)  # supersampling factor
    m = k * n
    u = (torch.arange(m, dtype=torch.float64) + 0.5) / m  # [m] fraction across the quad
    tl, bl, tr = (torch.from_numpy(quad[i]) for i in (0, 1, 3))
    pts = tl + (tr - tl) * u[None, :, None] + (bl - tl) * u[:, None, None]  # [m, m, 2] (x, y)
    src = torch.from_numpy(np.ascontiguousarray(region, dtype=np.float32)).permute(2, 0, 1)  # [3, h, w]
    out = sample_bilinear(src, pts).permute(1, 2, 0).numpy()  # [m, m, 3]
    if k > 1:
        out = _lanczos_resize(out, n)  # [n, n, 3]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def align_face(rgb: np.ndarray, landmarks: np.ndarray, config: AlignConfig | None = None) -> AlignedFace:
    """FFHQ-align one face.

    Args:
        rgb: the image ``[H, W, 3]``, float32 in [0, 1] or uint8.
        landmarks: ``[68, 2]`` dlib landmarks in image pixels.
        config: :class:`AlignConfig` (default: 1024 px, fast warp, padding on).

    Returns:
        :class:`AlignedFace` with the crop ``[N, N, 3]`` float32 in [0, 1] and its :class:`Alignment`.
    """
    config = config or AlignConfig()
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be [H, W, 3]; got {rgb.shape}")
    quad, qsize = ffhq_quad(landmarks)
    height, width = rgb.shape[:2]
    if config.transform_size is not None:
        rgb8 = rgb if rgb.dtype == np.uint8 else np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
        image = _align_reference(rgb8, quad, qsize, config)
    else:
        # Crop before converting, so that the cost follows the face's size, not the image's.
        x0, y0, x1, y1 = _crop_box(quad, max(int(np.rint(qsize * 0.1)), 3), width, height)
        region = rgb[y0:y1, x0:x1]  # [h, w, 3]
        scale = 255.0 if rgb.dtype == np.uint8 else 1.0
        region = region.astype(np.float32) / scale  # [h, w, 3] in [0, 1]
        image = _align_fast(region, quad - [x0, y0], qsize, config)
    return AlignedFace(image=image, alignment=Alignment.from_quad(quad, config.output_size, (width, height)))
