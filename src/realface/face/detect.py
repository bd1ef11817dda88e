"""Face detection (dlib HOG, falling back to dlib's CNN detector) and 68-point landmarks.

Rendered avatars often defeat the HOG detector, so when it finds nothing the CNN (MMOD) detector is
tried. The dlib model files come from the installed ``face_recognition_models`` package through
:func:`realface.weights.weight_path` (ids ``dlib-lm68`` and ``dlib-mmod``); loaded models are cached
per process.

Coordinates: image pixels, pixel centres at integer coordinates (dlib's convention), ``(x, y)``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Literal

import numpy as np

from realface.errors import FaceError
from realface.face.align import Alignment

__all__ = ["DetectConfig", "Detection", "Face", "detect_faces", "find_landmarks", "find_faces"]

logger = logging.getLogger(__name__)

Detector = Literal["hog", "cnn"]


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


@functools.cache
def _hog_detector():
    import dlib

    return dlib.get_frontal_face_detector()


@functools.cache
def _cnn_detector():
    import dlib

    from realface.weights import weight_path

    return dlib.cnn_face_detection_model_v1(str(weight_path("dlib-mmod")))


@functools.cache
def _shape_predictor():
    import dlib

    from realface.weights import weight_path

    return dlib.shape_predictor(str(weight_path("dlib-lm68")))


def _check_rgb8(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3]; got {rgb.shape} {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def _run_cnn(rgb: np.ndarray, config: DetectConfig) -> list[Detection]:
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = min(1.0, config.max_detect_side / max(h, w))
    small = rgb
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    found = _cnn_detector()(small, config.upsample)
    out = []
    for d in found:
        r = d.rect
        box = tuple(int(round((v + 0.5) / scale - 0.5)) for v in (r.left(), r.top(), r.right(), r.bottom()))
        out.append(Detection(box=box, score=float(d.confidence), detector="cnn"))  # type: ignore[arg-type]
    return out


def detect_faces(rgb: np.ndarray, config: DetectConfig | None = None) -> list[Detection]:
    """All faces in an image, largest first.

    Args:
        rgb: ``[H, W, 3]`` uint8 RGB.
        config: :class:`DetectConfig`.

    Returns:
        Detections whose sides are at least ``config.min_face_size`` pixels, sorted by box area,
        largest first (HOG results; CNN results only when HOG found no face at all). An empty list
        when none is found; a debug message notes faces dropped as too small.
    """
    config = config or DetectConfig()
    rgb = _check_rgb8(rgb)
    rects, scores, _ = _hog_detector().run(rgb, config.upsample, 0.0)
    found = [
        Detection(box=(r.left(), r.top(), r.right(), r.bottom()), score=float(s), detector="hog")
        for r, s in zip(rects, scores, strict=True)
    ]
    if not found and config.cnn_fallback:
        logger.debug("HOG found no face; trying the CNN detector")
        found = _run_cnn(rgb, config)
    kept = [d for d in found if min(d.width, d.height) >= config.min_face_size]
    if len(kept) < len(found):
        logger.debug("dropped %d face(s) smaller than %d px", len(found) - len(kept), config.min_face_size)
    return sorted(kept, key=lambda d: d.area, reverse=True)


def find_landmarks(rgb: np.ndarray, detection: Detection) -> np.ndarray:
    """The 68 dlib landmarks ``[68, 2]`` float64 ``(x, y)`` of one detected face."""
    import dlib

    rgb = _check_rgb8(rgb)
    left, top, right, bottom = detection.box
    shape = _shape_predictor()(rgb, dlib.rectangle(left, top, right, bottom))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)  # [68, 2]


def find_faces(rgb: np.ndarray, config: DetectConfig | None = None, *, source: str = "image") -> list[Face]:
    """Detect faces and their landmarks, largest first.

    Raises:
        FaceError: no face (of at least ``min_face_size`` pixels) was found; the message names
            ``source`` (usually the file name).
    """
    config = config or DetectConfig()
    detections = detect_faces(rgb, config)
    if not detections:
        detectors = "HOG and CNN detectors" if config.cnn_fallback else "HOG detector"
        raise FaceError(
            f"{source}: no face of at least {config.min_face_size} px found (tried the {detectors}); "
            "the face may be too small, turned away or occluded"
        )
    faces = []
    for d in detections:
        lm = find_landmarks(rgb, d)
        faces.append(
            Face(
                box=d.box,
                score=d.score,
                detector=d.detector,
                landmarks=tuple((float(x), float(y)) for x, y in lm),
            )
        )
    return faces
