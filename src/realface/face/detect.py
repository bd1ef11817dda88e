"""Face detection (dlib HOG, falling back to dlib's CNN detector) and 68-point landmarks.

Rendered avatars often defeat the HOG detector, so when it finds nothing the CNN (MMOD) detector is
tried. The dlib model files come from the installed ``face_recognition_models`` package through
:func:`realface.weights.weight_path` (ids ``dlib-lm68`` and ``dlib-mmod``); loaded models are cached
per process.

Coordinates: image pixels, pixel centres at integer coordinates (dlib's convention), ``(x, y)``.

dlib is never handed an image it cannot process: an image whose shorter side is below
:func:`smallest_image_side` holds no face that could be kept, and is reported as having none before
dlib sees it (dlib's CNN fails on images of a few pixels). Any ``RuntimeError`` from dlib is raised
again as a :class:`~realface.errors.FaceError` (or :class:`~realface.errors.WeightsError` when a
model file cannot be read) whose message names the image, never dlib's own text.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import Literal, TypeVar

import numpy as np

from realface.errors import FaceError, WeightsError
from realface.face.align import Alignment

__all__ = [
    "DetectConfig",
    "Detection",
    "Face",
    "MIN_DETECT_SIDE",
    "detect_faces",
    "find_landmarks",
    "find_faces",
    "smallest_image_side",
]

logger = logging.getLogger(__name__)

Detector = Literal["hog", "cnn"]

MIN_DETECT_SIDE = 16
"""The shortest image side (pixels) handed to a dlib detector. dlib's CNN detector fails on images
of 9 px and less (its filters do not fit); 16 px leaves a margin. No detector can find a face there."""

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class DetectConfig:
    """Options of :func:`detect_faces`.

    Attributes:
        upsample: times dlib upsamples the image before detecting (finds smaller faces, slower).
            Default 1, as for the FFHQ fixtures.
        cnn_fallback: try the CNN detector when HOG finds no face. Default True.
        min_face_size: faces whose box is narrower or shorter than this many pixels are dropped.
            Default 48: smaller faces carry too little detail for a 256 px aligned crop.
        max_detect_side: the CNN detector runs on a copy downscaled so that its longer side is at
            most this (it is slow and memory-hungry on large images). Default 1024.
    """

    upsample: int = 1
    cnn_fallback: bool = True
    min_face_size: int = 48
    max_detect_side: int = 1024

    def __post_init__(self) -> None:
        if self.upsample < 0 or self.min_face_size < 0 or self.max_detect_side < 64:
            raise ValueError(f"invalid DetectConfig: {self}")


@dataclasses.dataclass(frozen=True)
class Detection:
    """A detected face box ``(left, top, right, bottom)`` (dlib's inclusive corners), score, detector."""

    box: tuple[int, int, int, int]
    score: float
    detector: Detector

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0] + 1

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1] + 1

    @property
    def area(self) -> int:
        return self.width * self.height


@dataclasses.dataclass(frozen=True)
class Face:
    """One face of an image: detection, 68 landmarks and (once aligned) the alignment record.

    Attributes:
        box: ``(left, top, right, bottom)`` in image pixels, corners inclusive (dlib rectangle).
        score: detector score (HOG: SVM margin; CNN: MMOD confidence).
        detector: ``"hog"`` or ``"cnn"``.
        landmarks: 68 ``(x, y)`` points in image pixels (dlib 68-point layout).
        alignment: the FFHQ alignment, or ``None`` before alignment.
    """

    box: tuple[int, int, int, int]
    score: float
    detector: Detector
    landmarks: tuple[tuple[float, float], ...]
    alignment: Alignment | None = None

    def __post_init__(self) -> None:
        if len(self.landmarks) != 68:
            raise ValueError(f"a Face needs 68 landmarks; got {len(self.landmarks)}")

    @property
    def landmarks_array(self) -> np.ndarray:
        return np.array(self.landmarks, dtype=np.float64)  # [68, 2]

    def with_alignment(self, alignment: Alignment) -> Face:
        return dataclasses.replace(self, alignment=alignment)

    def to_dict(self) -> dict:
        return {
            "box_ltrb": list(self.box),
            "score": self.score,
            "detector": self.detector,
            "landmarks_68": [list(p) for p in self.landmarks],
            "alignment": None if self.alignment is None else self.alignment.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Face:
        try:
            box = tuple(int(v) for v in d["box_ltrb"])
            lms = tuple((float(x), float(y)) for x, y in d["landmarks_68"])
            al = d.get("alignment")
            return cls(
                box=box,  # type: ignore[arg-type]
                score=float(d["score"]),
                detector=str(d["detector"]),  # type: ignore[arg-type]
                landmarks=lms,
                alignment=None if al is None else Alignment.from_dict(al),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a face record: {type(exc).__name__}: {exc}") from None


def smallest_image_side(config: DetectConfig) -> int:
    """The shortest image side on which a face can be found and kept: ``config.min_face_size`` (a
    kept face's box is at least that wide and tall), and never under :data:`MIN_DETECT_SIDE`."""
    return max(config.min_face_size, MIN_DETECT_SIDE)


def _dlib_call(source: str, what: str, fn: Callable[[], _T]) -> _T:
    """``fn()``, with dlib's ``RuntimeError`` raised again as a :class:`FaceError` naming ``source``.

    dlib's message (a C++ assertion with file and line) means nothing to a user and is not shown."""
    try:
        return fn()
    except RuntimeError:
        raise FaceError(f"{source}: the {what} could not process this image") from None


def _load_model(weight_id: str, load: Callable[[str], _T]) -> _T:
    from realface.weights import weight_path

    path = weight_path(weight_id)
    try:
        return load(str(path))
    except RuntimeError:
        raise WeightsError(
            f"{path}: dlib cannot read the {weight_id} model file; reinstall face_recognition_models "
            f"or import the file again with `realface weights import {weight_id} FILE`"
        ) from None


@functools.cache
def _hog_detector():
    import dlib

    return dlib.get_frontal_face_detector()


@functools.cache
def _cnn_detector():
    import dlib

    return _load_model("dlib-mmod", dlib.cnn_face_detection_model_v1)


@functools.cache
def _shape_predictor():
    import dlib

    return _load_model("dlib-lm68", dlib.shape_predictor)


def _check_rgb8(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3]; got {rgb.shape} {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def _run_cnn(rgb: np.ndarray, config: DetectConfig, source: str = "image") -> list[Detection]:
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = min(1.0, config.max_detect_side / max(h, w))
    small = rgb
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if min(size) < MIN_DETECT_SIDE:  # a long thin image: its downscaled copy is too thin to scan
            logger.debug("%s: the CNN detector's %dx%d copy is too small; skipped", source, *size)
            return []
        small = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    detector = _cnn_detector()
    found = _dlib_call(source, "CNN face detector", lambda: detector(small, config.upsample))
    out = []
    for d in found:
        r = d.rect
        box = tuple(int(round((v + 0.5) / scale - 0.5)) for v in (r.left(), r.top(), r.right(), r.bottom()))
        out.append(Detection(box=box, score=float(d.confidence), detector="cnn"))  # type: ignore[arg-type]
    return out


def detect_faces(
    rgb: np.ndarray, config: DetectConfig | None = None, *, source: str = "image"
) -> list[Detection]:
    """All faces in an image, largest first.

    Args:
        rgb: ``[H, W, 3]`` uint8 RGB.
        config: :class:`DetectConfig`.
        source: how messages name the image (usually its file name).

    Returns:
        Detections whose sides are at least ``config.min_face_size`` pixels, sorted by box area,
        largest first (HOG results; CNN results only when HOG found no face at all). An empty list
        when none is found (at once, without running dlib, when the image's shorter side is below
        :func:`smallest_image_side`); a debug message notes faces dropped as too small.

    Raises:
        FaceError: dlib failed on the image (its own message is not passed on).
    """
    config = config or DetectConfig()
    rgb = _check_rgb8(rgb)
    if min(rgb.shape[:2]) < smallest_image_side(config):
        logger.debug("%s: %dx%d is too small to hold a face", source, rgb.shape[1], rgb.shape[0])
        return []
    hog = _hog_detector()
    rects, scores, _ = _dlib_call(source, "HOG face detector", lambda: hog.run(rgb, config.upsample, 0.0))
    found = [
        Detection(box=(r.left(), r.top(), r.right(), r.bottom()), score=float(s), detector="hog")
        for r, s in zip(rects, scores, strict=True)
    ]
    if not found and config.cnn_fallback:
        logger.debug("HOG found no face; trying the CNN detector")
        found = _run_cnn(rgb, config, source)
    kept = [d for d in found if min(d.width, d.height) >= config.min_face_size]
    if len(kept) < len(found):
        logger.debug("dropped %d face(s) smaller than %d px", len(found) - len(kept), config.min_face_size)
    return sorted(kept, key=lambda d: d.area, reverse=True)


def find_landmarks(rgb: np.ndarray, detection: Detection, *, source: str = "image") -> np.ndarray:
    """The 68 dlib landmarks ``[68, 2]`` float64 ``(x, y)`` of one detected face.

    Raises:
        FaceError: dlib failed on the image; the message names ``source``.
    """
    import dlib

    rgb = _check_rgb8(rgb)
    left, top, right, bottom = detection.box
    predictor = _shape_predictor()
    rect = dlib.rectangle(left, top, right, bottom)
    shape = _dlib_call(source, "landmark predictor", lambda: predictor(rgb, rect))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)  # [68, 2]


def find_faces(rgb: np.ndarray, config: DetectConfig | None = None, *, source: str = "image") -> list[Face]:
    """Detect faces and their landmarks, largest first.

    Raises:
        FaceError: no face (of at least ``min_face_size`` pixels) was found, or the image is too
            small to hold one, or dlib failed on it; the message names ``source`` (usually the file
            name).
    """
    config = config or DetectConfig()
    height, width = rgb.shape[:2]
    if min(height, width) < smallest_image_side(config):
        raise FaceError(
            f"{source}: no face of at least {smallest_image_side(config)} px found: the image is "
            f"only {width}x{height}"
        )
    detections = detect_faces(rgb, config, source=source)
    if not detections:
        detectors = "HOG and CNN detectors" if config.cnn_fallback else "HOG detector"
        raise FaceError(
            f"{source}: no face of at least {config.min_face_size} px found (tried the {detectors}); "
            "the face may be too small, turned away or occluded"
        )
    faces = []
    for d in detections:
        lm = find_landmarks(rgb, d, source=source)
        faces.append(
            Face(
                box=d.box,
                score=d.score,
                detector=d.detector,
                landmarks=tuple((float(x), float(y)) for x, y in lm),
            )
        )
    return faces
