"""Face masks in the aligned frame: from landmarks (default, offline) or from BiSeNet face parsing.

A :class:`FaceMask` lives in the aligned frame at a modest resolution ``R`` (default 256): the mask is
smooth, so it is built and feathered at ``R`` and only resampled at paste time. Pixel centres are at
integer coordinates in both the ``R`` grid and the ``N``-pixel aligned frame, so mask pixel ``a_R``
sits at aligned pixel ``(a_R + 0.5) · N / R − 0.5``.

Erosion and feathering are fractions of the aligned size, and so of the face: in the FFHQ crop the
face has a fixed size (the eyes are about 0.25 of the side apart). The feathered mask's support is
at most ``√2 · truncate · feather`` beyond the eroded region (the Gaussian is separable and cut at
``truncate`` σ), so with the defaults (erosion 0.035, feather σ 0.012, truncate 2) the feathered edge
lies wholly inside the un-eroded face region; the mask is also clipped to that region.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.ndimage
import torch
from PIL import Image, ImageDraw
from scipy.spatial import ConvexHull

from realface.errors import WeightsError

if TYPE_CHECKING:
    from realface.face.align import Alignment

__all__ = [
    "MaskConfig",
    "FaceMask",
    "landmark_region",
    "parsing_region",
    "make_mask",
    "build_mask",
    "FaceParser",
    "parser_available",
]

logger = logging.getLogger(__name__)

MaskKind = Literal["auto", "landmarks", "parsing"]


@dataclasses.dataclass(frozen=True)
class MaskConfig:
    """How the paste-back mask is made.

    Attributes:
        kind: ``"landmarks"`` (jaw line plus a forehead above the brows; works offline),
            ``"parsing"`` (BiSeNet classes ``labels``; needs the ``bisenet-79999`` weights) or
            ``"auto"`` (parsing when its weights are present, else landmarks). Default ``"auto"``.
        resolution: side ``R`` of the mask grid in the aligned frame. Default 256.
        forehead: the brows are lifted by this fraction of the brow-to-chin height to close the
            polygon above the forehead. Default 0.4.
        erode: erosion radius as a fraction of the aligned size. Default 0.035.
        feather: Gaussian σ of the feathering as a fraction of the aligned size. Default 0.012.
        truncate: the Gaussian is cut at ``truncate`` σ. Default 2.0.
        labels: BiSeNet class ids kept by the parsing mask (default: skin, brows, eyes, glasses,
            ears, nose, mouth, lips, hair, as in the paper).
        stats_labels: BiSeNet class ids whose pixels give the colour statistics (default skin).
    """

    kind: MaskKind = "auto"
    resolution: int = 256
    forehead: float = 0.4
    erode: float = 0.035
    feather: float = 0.012
    truncate: float = 2.0
    labels: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 17)
    stats_labels: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "landmarks", "parsing"):
            raise ValueError(f"kind must be 'auto', 'landmarks' or 'parsing'; got {self.kind!r}")
        if not 32 <= self.resolution <= 2048:
            raise ValueError(f"resolution must be in [32, 2048]; got {self.resolution}")
        for name in ("forehead", "erode", "feather"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)}")
        if self.truncate <= 0:
            raise ValueError(f"truncate must be positive; got {self.truncate}")


@dataclasses.dataclass(frozen=True, eq=False)
class FaceMask:
    """A feathered mask in the aligned frame.

    Attributes:
        alpha: ``[R, R]`` float32 in [0, 1]; 0 means "keep the original pixel".
        stats: ``[R, R]`` bool, pixels whose colours are compared for colour correction.
        kind: ``"landmarks"`` or ``"parsing"``.
    """

    alpha: np.ndarray
    stats: np.ndarray
    kind: str

    def __post_init__(self) -> None:
        a = self.alpha
        if a.ndim != 2 or a.shape[0] != a.shape[1] or a.dtype != np.float32:
            raise ValueError(f"alpha must be a square float32 [R, R] array; got {a.shape} {a.dtype}")
        if self.stats.shape != a.shape or self.stats.dtype != np.bool_:
            raise ValueError(f"stats must be bool {a.shape}; got {self.stats.shape} {self.stats.dtype}")

    @property
    def resolution(self) -> int:
        return int(self.alpha.shape[0])


def landmark_region(landmarks_aligned: np.ndarray, aligned_size: int, config: MaskConfig) -> np.ndarray:
    """Hard face region ``[R, R]`` bool from landmarks in the aligned frame.

    The region is the convex hull of the 17 jaw points and of the 10 brow points lifted by
    ``config.forehead`` × (chin − mean brow height), so that it covers the forehead.

    Args:
        landmarks_aligned: ``[68, 2]`` landmarks in aligned pixels of an ``aligned_size`` crop.
    """
    lm = np.asarray(landmarks_aligned, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2); got {lm.shape}")
    r = config.resolution
    lm = (lm + 0.5) * (r / aligned_size) - 0.5  # [68, 2] in mask pixels
    brows = lm[17:27]  # [10, 2]
    lift = config.forehead * max(lm[8, 1] - brows[:, 1].mean(), 0.0)
    pts = np.concatenate([lm[0:17], brows - [0.0, lift]])  # [27, 2]
    hull = pts[ConvexHull(pts).vertices]  # [K, 2]
    canvas = Image.new("L", (r, r), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in hull], fill=255)
    return np.asarray(canvas) > 127  # [R, R]


def parsing_region(labels: np.ndarray, keep: tuple[int, ...], resolution: int) -> np.ndarray:
    """Hard region ``[R, R]`` bool of the pixels whose parsing label is in ``keep``.

    ``labels`` ``[S, S]`` integer classes of the aligned face; resampled to ``R`` by area average.
    """
    if labels.ndim != 2 or labels.shape[0] != labels.shape[1]:
        raise ValueError(f"labels must be a square [S, S] array; got {labels.shape}")
    region = np.isin(labels, keep).astype(np.float32)  # [S, S]
    if region.shape[0] != resolution:
        t = torch.from_numpy(region)[None, None]
        t = torch.nn.functional.interpolate(t, size=(resolution, resolution), mode="area")
        region = t[0, 0].numpy()
    return region >= 0.5  # [R, R]


def _erode_feather(region: np.ndarray, config: MaskConfig) -> tuple[np.ndarray, np.ndarray]:
    r = region.shape[0]
    erode_px = config.erode * r
    if erode_px > 0:
        inside = scipy.ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]  # [R, R]
        eroded = inside > erode_px
    else:
        eroded = region.copy()
    sigma = config.feather * r
    alpha = eroded.astype(np.float32)
    if sigma > 0:
        alpha = scipy.ndimage.gaussian_filter(alpha, sigma, mode="constant", truncate=config.truncate)
    alpha[alpha < 1.0 / 1024] = 0.0  # exact zeros where the change would be invisible
    alpha *= region  # the support never leaves the un-eroded region, whatever the settings
    return np.clip(alpha, 0.0, 1.0).astype(np.float32), eroded


def make_mask(
    landmarks_aligned: np.ndarray | None,
    aligned_size: int,
    config: MaskConfig,
    labels: np.ndarray | None = None,
) -> FaceMask:
    """Feathered :class:`FaceMask` from landmarks (``labels`` is None) or from parsing labels.

    Args:
        landmarks_aligned: ``[68, 2]`` landmarks in the aligned frame (needed for the landmark mask).
        aligned_size: side ``N`` of the aligned crop the landmarks refer to.
        config: :class:`MaskConfig`.
        labels: ``[S, S]`` BiSeNet classes of the aligned crop, or ``None`` for the landmark mask.
    """
    if labels is None:
        if landmarks_aligned is None:
            raise ValueError("the landmark mask needs landmarks_aligned")
        region = landmark_region(landmarks_aligned, aligned_size, config)
        alpha, eroded = _erode_feather(region, config)
        return FaceMask(alpha=alpha, stats=eroded, kind="landmarks")
    region = parsing_region(labels, config.labels, config.resolution)
    alpha, eroded = _erode_feather(region, config)
    stats = parsing_region(labels, config.stats_labels, config.resolution) & eroded
    return FaceMask(alpha=alpha, stats=stats, kind="parsing")


class FaceParser:
    """BiSeNet face parsing of aligned crops. ``FaceParser.from_weights()`` finds ``bisenet-79999``."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu"):
        from realface.nn.parsing import load_bisenet

        self.device = torch.device(device)
        self.model = load_bisenet(path, self.device)

    @classmethod
    def from_weights(cls, device: str | torch.device = "cpu") -> FaceParser:
        """The parser with the registry's weights; raises :class:`WeightsError` when they are absent."""
        from realface.weights import weight_path

        return _cached_parser(str(weight_path("bisenet-79999", download=False)), str(device))

    @torch.no_grad()
    def __call__(self, aligned_rgb: np.ndarray) -> np.ndarray:
        """Class labels ``[512, 512]`` uint8 of an aligned crop ``[N, N, 3]`` float32 in [0, 1]."""
        from realface.nn.parsing import preprocess

        if aligned_rgb.ndim != 3 or aligned_rgb.shape[2] != 3:
            raise ValueError(f"expected an aligned RGB crop [N, N, 3]; got {aligned_rgb.shape}")
        x = torch.from_numpy(np.ascontiguousarray(aligned_rgb, dtype=np.float32)).permute(2, 0, 1)[None]
        logits = self.model(preprocess(x.to(self.device)))[0]  # [1, 19, 512, 512]
        return logits[0].argmax(0).to(torch.uint8).cpu().numpy()  # [512, 512]


@functools.lru_cache(maxsize=2)
def _cached_parser(path: str, device: str) -> FaceParser:
    return FaceParser(path, device)


def parser_available() -> bool:
    """True when the BiSeNet weights are present locally (nothing is downloaded)."""
    try:
        from realface.weights import weight_path

        weight_path("bisenet-79999", download=False)
    except WeightsError:
        return False
    return True


def build_mask(
    rgb: np.ndarray | None,
    landmarks: np.ndarray,
    alignment: Alignment,
    config: MaskConfig,
    parser: FaceParser | None = None,
) -> FaceMask:
    """The mask of one face of an image, in the aligned frame of ``alignment``.

    Args:
        rgb: the original image ``[H, W, 3]`` (uint8, or float32 in [0, 1]); needed by the parsing mask,
            which parses the original face re-aligned at 512 px (so that only pixels of the original
            face can be replaced).
        landmarks: ``[68, 2]`` landmarks in image pixels.
        alignment: :class:`~realface.face.align.Alignment` of the face.
        config: :class:`MaskConfig`; ``kind="auto"`` uses parsing when its weights are present.
        parser: a :class:`FaceParser` to use (default: the registry's weights, loaded once).
    """
    from realface.face.align import AlignConfig, align_face, apply_transform

    kind = config.kind
    if kind == "auto":
        kind = "parsing" if parser is not None or parser_available() else "landmarks"
        logger.debug("mask kind: %s", kind)
    if kind == "landmarks":
        lm_aligned = apply_transform(alignment.matrix, landmarks)  # [68, 2]
        return make_mask(lm_aligned, alignment.output_size, config)
    if rgb is None:
        raise ValueError("the parsing mask needs the original image (rgb)")
    parser = parser or FaceParser.from_weights()
    crop = align_face(rgb, landmarks, AlignConfig(output_size=512))
    return make_mask(None, alignment.output_size, config, labels=parser(crop.image))
