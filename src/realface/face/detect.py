"""Face detection (BlazeFace full-range by default; dlib HOG and CNN as alternatives) and 68-point landmarks.

Detectors are registered by name in :data:`DETECTORS` and chosen with ``DetectConfig(detector=...)``:

- ``"blazeface"`` (default): MediaPipe's BlazeFace full-range network (:mod:`realface.nn.blazeface`,
  Apache-2.0 weights shipped inside realface, registry id ``blazeface-full-range``), run on tiles so
  that faces of 50 px on a 24 MP canvas are found (see :func:`_blazeface_candidates`); finds turned
  heads and rejects prints and badges that dlib's HOG accepts. Its score is the network's face
  probability; the default threshold is :data:`BLAZEFACE_THRESHOLD`.
- ``"hog"``: dlib's HOG detector on the whole image (``upsample`` times upsampled, SVM margin
  threshold ``0``), falling back to dlib's CNN (MMOD) detector on a copy of at most
  ``max_detect_side`` pixels when it finds nothing (``cnn_fallback``). Kept as it was.
- ``"cnn"``: dlib's CNN detector alone, on that downscaled copy.

Landmarks: dlib's 68-point shape predictor (``dlib-lm68``) runs on a crop around each detection
(never on the whole image), on the box its own detector would give; a BlazeFace detection's box is
mapped to that box (:func:`dlib_box_from_blazeface`) and the fit is rejected when its eyes, nose tip
or mouth lie further than ``keypoint_tolerance`` box widths from BlazeFace's keypoints.

The dlib model files come from the installed ``face_recognition_models`` package through
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
import math
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import numpy as np

from realface.errors import FaceError, WeightsError
from realface.face.align import Alignment

__all__ = [
    "BLAZEFACE_SURE",
    "BLAZEFACE_THRESHOLD",
    "DETECTORS",
    "DetectConfig",
    "Detection",
    "DetectorSpec",
    "Face",
    "MIN_DETECT_SIDE",
    "detect_faces",
    "dlib_box_from_blazeface",
    "dlib_confirms",
    "find_landmarks",
    "find_faces",
    "smallest_image_side",
]

logger = logging.getLogger(__name__)

Detector = Literal["blazeface", "hog", "cnn", "given"]
"""Where a face came from: a registered detector, or ``"given"`` (read from a faces file by
:mod:`realface.face.given`, not detected)."""

MIN_DETECT_SIDE = 16
"""The shortest image side (pixels) handed to a dlib detector. dlib's CNN detector fails on images
of 9 px and less (its filters do not fit); 16 px leaves a margin. No detector can find a face there."""

BLAZEFACE_THRESHOLD = 0.65
"""Default score threshold of the BlazeFace detector (face probability). On the detection benchmark
(``benchmarks/bench_detect.py``) real faces score 0.67 (darkened to 35 %) and more, while prints and
badges other than smileys stay under 0.62; smileys, which score up to 0.71, are left to the second
stage (:data:`BLAZEFACE_SURE`). Candidates from :data:`BLAZEFACE_LOG_FLOOR` up to the threshold are
logged."""

BLAZEFACE_LOG_FLOOR = 0.2
"""BlazeFace candidates scoring at least this, but under the threshold, are logged with their score."""

BLAZEFACE_SURE = 0.8
"""Default :attr:`DetectConfig.sure_score`: BlazeFace candidates from the threshold up to this score are
kept only when dlib confirms them on their crop (:func:`dlib_confirms`). On the detection benchmark a
smiley badge scores 0.71 and real faces 0.67 (darkened) to 0.96; dlib's HOG confirms every real face
under 0.8 (margins 0.66 and more) and neither HOG nor CNN confirms the smiley (HOG margin -0.41), while
a face turned 45° scoring 0.81 is confirmed by neither, hence no verification above 0.8."""

VERIFY_SIDE = 100
"""Pixels: the crop :func:`dlib_confirms` hands dlib is scaled so that the candidate's box is this wide
(dlib's HOG window is 80 px; its CNN finds faces from about 40 px)."""
"""BlazeFace candidates scoring at least this, but under the threshold, are logged with their score."""

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class DetectConfig:
    """Options of :func:`detect_faces` and :func:`find_faces`.

    Attributes:
        detector: ``"blazeface"`` (default), ``"hog"`` or ``"cnn"`` (see :data:`DETECTORS`).
        threshold: the least score a face must have; ``None`` (default) takes the detector's default
            (:data:`BLAZEFACE_THRESHOLD` for BlazeFace's probability; ``0`` for HOG's SVM margin and
            CNN's MMOD confidence, as dlib's own defaults).
        min_face_size: faces whose box is narrower or shorter than this many pixels are dropped.
            Default 48: smaller faces carry too little detail for a 256 px aligned crop.
        upsample: times dlib upsamples the image before detecting (``hog`` and ``cnn``; finds smaller
            faces, slower). Default 1, as for the FFHQ fixtures.
        cnn_fallback: with ``hog``, try the CNN detector when HOG finds no face. Default True.
        max_detect_side: the CNN detector runs on a copy downscaled so that its longer side is at
            most this (it is slow and memory-hungry on large images). Default 1024.
        tile_size: BlazeFace looks at tiles of this many image pixels, each reduced to its 192 px
            input, then at tiles twice, four times... as large, and at the whole image. A multiple
            of 192. Default 576: a 50 px face is 17 px at the network's input (at 768, 12.5 px, a
            60 px face scored under 0.5 on the benchmark).
        tile_overlap: overlap of neighbouring tiles in image pixels at the finest level (scaled
            with the tiles at coarser levels). Default 144 (48 px of the network's input): a face
            up to 144 px across is whole in some finest tile, one up to 288 px in some tile of the
            next level (where it is 24–48 input pixels), and so on.
        nms_iou: BlazeFace candidates overlapping more than this (intersection over union) are one
            face; their boxes and keypoints are averaged weighted by score. Default 0.3 (MediaPipe's).
        keypoint_tolerance: a 68-point fit on a BlazeFace detection is rejected when an eye centre,
            the nose tip or the mouth centre lies further than this many box widths from BlazeFace's
            keypoint. Default 0.4: on faces of 50–60 px BlazeFace's keypoints stray up to 0.3 box
            widths from a good fit; a fit on the wrong thing misses by more.
        sure_score: BlazeFace candidates scoring at least the threshold but under this are kept only
            when dlib's HOG or CNN detector confirms them on their crop (:func:`dlib_confirms`);
            smiley prints score as high as darkened real faces. Default :data:`BLAZEFACE_SURE` (0.8);
            ``0`` turns the check off. Other detectors ignore it.
    """

    detector: Detector = "blazeface"
    threshold: float | None = None
    min_face_size: int = 48
    upsample: int = 1
    cnn_fallback: bool = True
    max_detect_side: int = 1024
    tile_size: int = 576
    tile_overlap: int = 144
    nms_iou: float = 0.3
    keypoint_tolerance: float = 0.4
    sure_score: float = BLAZEFACE_SURE

    def __post_init__(self) -> None:
        if self.upsample < 0 or self.min_face_size < 0 or self.max_detect_side < 64:
            raise ValueError(f"invalid DetectConfig: {self}")
        if self.detector not in DETECTORS:
            raise ValueError(f"unknown detector {self.detector!r}; choose one of {sorted(DETECTORS)}")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ValueError(f"DetectConfig threshold must be a finite number; got {self.threshold}")
        if self.tile_size < 192 or self.tile_size % 192 or not 0 <= self.tile_overlap < self.tile_size:
            raise ValueError(
                f"invalid DetectConfig tiles: size {self.tile_size}, overlap {self.tile_overlap}"
            )
        if not 0.0 < self.nms_iou < 1.0 or self.keypoint_tolerance <= 0 or not 0 <= self.sure_score <= 1:
            raise ValueError(f"invalid DetectConfig: {self}")

    @property
    def score_threshold(self) -> float:
        """The threshold in force: :attr:`threshold`, else the detector's default."""
        return DETECTORS[self.detector].default_threshold if self.threshold is None else self.threshold


@dataclasses.dataclass(frozen=True)
class Detection:
    """A detected face box ``(left, top, right, bottom)`` (dlib's inclusive corners), score, detector.

    ``keypoints``: BlazeFace's six ``(x, y)`` points in image pixels (the subject's right eye, left
    eye, nose tip, mouth centre, right ear, left ear; see :data:`realface.nn.blazeface.KEYPOINTS`),
    or ``None`` for the dlib detectors.
    """

    box: tuple[int, int, int, int]
    score: float
    detector: Detector
    keypoints: tuple[tuple[float, float], ...] | None = None

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
        score: detector score (BlazeFace: probability; HOG: SVM margin; CNN: MMOD confidence).
        detector: ``"blazeface"``, ``"hog"``, ``"cnn"``, or ``"given"`` (from a faces file).
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
        small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    detector = _cnn_detector()
    found = _dlib_call(source, "CNN face detector", lambda: detector(small, config.upsample))
    out = []
    for d in found:
        r = d.rect
        box = tuple(int(round((v + 0.5) / scale - 0.5)) for v in (r.left(), r.top(), r.right(), r.bottom()))
        out.append(Detection(box=box, score=float(d.confidence), detector="cnn"))  # type: ignore[arg-type]
    return out


def _run_hog(rgb: np.ndarray, config: DetectConfig, source: str) -> list[Detection]:
    """dlib HOG on the whole image, falling back to the CNN detector when it finds nothing."""
    hog = _hog_detector()
    threshold = config.score_threshold
    rects, scores, _ = _dlib_call(
        source, "HOG face detector", lambda: hog.run(rgb, config.upsample, threshold)
    )
    found = [
        Detection(box=(r.left(), r.top(), r.right(), r.bottom()), score=float(s), detector="hog")
        for r, s in zip(rects, scores, strict=True)
    ]
    if not found and config.cnn_fallback:
        logger.debug("HOG found no face; trying the CNN detector")
        found = [d for d in _run_cnn(rgb, config, source) if d.score >= threshold]
    return found


def _run_cnn_only(rgb: np.ndarray, config: DetectConfig, source: str) -> list[Detection]:
    return [d for d in _run_cnn(rgb, config, source) if d.score >= config.score_threshold]


# --- BlazeFace ---------------------------------------------------------------------------------------

# A BlazeFace box (tight around brows, eyes, nose and mouth) mapped to the box dlib's HOG detector
# gives the same face, which is what dlib's 68-point predictor was trained on: the centre moves down
# by _DLIB_DY box sides and the side is scaled by _DLIB_SCALE. Fitted on the two fixture faces
# (tests/data/align/*_landmarks.json: scales 0.861 and 0.840, downward shifts 0.011 and 0.022; their
# sideways shifts, -0.04 both, follow the head's turn and are not applied) and checked by
# tests/face/test_detect_blazeface.py.
_DLIB_SCALE = 0.85
_DLIB_DY = 0.016


def dlib_box_from_blazeface(box_xyxy: np.ndarray) -> tuple[int, int, int, int]:
    """The dlib-style box ``(left, top, right, bottom)`` (inclusive, pixel centres at integers) for a
    BlazeFace box ``(x0, y0, x1, y1)`` given by its outer edges in image pixels."""
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    side = 0.5 * ((x1 - x0) + (y1 - y0)) * _DLIB_SCALE
    cx = 0.5 * (x0 + x1) - 0.5  # pixel-centre coordinates
    cy = 0.5 * (y0 + y1) - 0.5 + _DLIB_DY * side
    half = 0.5 * (side - 1.0)
    return (round(cx - half), round(cy - half), round(cx + half), round(cy + half))


@functools.cache
def _blazeface_model():
    import torch

    from realface.nn.blazeface import load_blazeface
    from realface.weights import weight_path

    model = load_blazeface(weight_path("blazeface-full-range"))
    return model.to(memory_format=torch.channels_last)


@dataclasses.dataclass(frozen=True)
class _Tile:
    """A network input cut from an image reduced ``fx`` times across and ``fy`` times down (image pixels
    per reduced pixel): origin ``x, y`` in reduced pixels; ``inner`` flags (left, top, right, bottom)
    mark sides that are not the image's border."""

    image: np.ndarray  # [192, 192, 3] uint8
    x: int
    y: int
    fx: float
    fy: float
    inner: tuple[bool, bool, bool, bool]


def _positions(length: int, size: int, stride: int) -> list[int]:
    """Tile origins along one axis: evenly spread, neighbours at most ``stride`` apart."""
    if length <= size:
        return [0]
    n = math.ceil((length - size) / stride) + 1
    return [round(v) for v in np.linspace(0, length - size, n)]


def _pad_to_input(a: np.ndarray, size: int) -> np.ndarray:
    h, w = a.shape[:2]
    if h == size and w == size:
        return a
    out = np.zeros((size, size, 3), np.uint8)  # black, as MediaPipe's letterbox
    out[:h, :w] = a
    return out


_FLAT = 8


def _is_flat(tile: np.ndarray) -> bool:
    """Whether no two neighbouring pixels of ``tile`` [h, w, 3] differ by :data:`_FLAT` or more in any channel."""
    t = tile.astype(np.int16)
    return bool(
        np.abs(np.diff(t, axis=0)).max(initial=0) < _FLAT
        and np.abs(np.diff(t, axis=1)).max(initial=0) < _FLAT
    )


def _tiles(rgb: np.ndarray, config: DetectConfig) -> list[_Tile]:
    """Tiles of every level (tile side ``tile_size · 2^k`` image pixels, each reduced to 192), then the
    whole image reduced to fit 192. Tiles without an edge (no two neighbouring pixels differ by
    :data:`_FLAT` grey levels or more: plain backgrounds, soft gradients) hold no face and are left out."""
    from PIL import Image

    from realface.nn.blazeface import INPUT_SIZE as N

    height, width = rgb.shape[:2]
    overlap = round(config.tile_overlap * N / config.tile_size)  # in input pixels, every level
    stride = N - overlap
    step = config.tile_size // N  # image pixels per input pixel at the finest level
    tiles: list[_Tile] = []
    level = Image.fromarray(rgb)
    factor = 1.0
    while math.ceil(max(width, height) / (factor * step)) > N:
        level = level.reduce(step)  # box filter: reduced pixel i covers image pixels [i·f, (i+1)·f)
        factor *= step
        step = 2
        a = np.asarray(level)  # [h, w, 3]
        h, w = a.shape[:2]
        for y in _positions(h, N, stride):
            for x in _positions(w, N, stride):
                crop = a[y : y + N, x : x + N]
                if _is_flat(crop):
                    continue
                inner = (x > 0, y > 0, x + N < w, y + N < h)
                tiles.append(_Tile(_pad_to_input(crop, N), x, y, factor, factor, inner))
    # The whole image, for faces too large for any tile.
    scale = max(width, height) / N  # image pixels per input pixel
    size = (max(1, round(width / scale)), max(1, round(height / scale)))
    whole = np.asarray(level.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
    fx, fy = width / size[0], height / size[1]
    tiles.append(_Tile(_pad_to_input(whole, N), 0, 0, fx, fy, (False, False, False, False)))
    return tiles


def _decode(logits: np.ndarray, regress: np.ndarray, floor: float) -> tuple[np.ndarray, ...]:
    """Candidates of one tile scoring at least ``floor``: scores ``[K]``, boxes ``[K, 4]`` (x0, y0, x1, y1
    outer edges) and keypoints ``[K, 6, 2]``, in input pixels."""
    from realface.nn.blazeface import anchor_centres

    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100.0, 100.0)))  # [2304]
    keep = np.nonzero(scores >= floor)[0]
    anchors = anchor_centres()[keep]  # [K, 2]
    r = regress[keep].astype(np.float64)  # [K, 16]
    centre = anchors + r[:, 0:2]  # [K, 2]
    half = 0.5 * r[:, 2:4]  # [K, 2]
    boxes = np.concatenate([centre - half, centre + half], axis=1)  # [K, 4]
    keypoints = anchors[:, None, :] + r[:, 4:16].reshape(-1, 6, 2)  # [K, 6, 2]
    return scores[keep], boxes, keypoints


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box ``[4]`` with boxes ``[K, 4]`` (x0, y0, x1, y1)."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h  # [K]
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def _weighted_nms(
    scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray, iou: float
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """MediaPipe's weighted non-maximum suppression: the best candidate and all that overlap it by more
    than ``iou`` become one face whose box and keypoints are their score-weighted means and whose
    score is the best one's. Returns ``(score, box [4], keypoints [6, 2])``, best first."""
    order = np.argsort(-scores, kind="stable")
    scores, boxes, keypoints = scores[order], boxes[order], keypoints[order]
    alive = np.ones(len(scores), bool)
    out = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        group = alive & (_iou(boxes[i], boxes) > iou)
        group[i] = True
        w = scores[group][:, None]  # [G, 1]
        box = (boxes[group] * w).sum(0) / w.sum()  # [4]
        kp = (keypoints[group] * w[:, :, None]).sum(0) / w.sum()  # [6, 2]
        out.append((float(scores[i]), box, kp))
        alive &= ~group
    return out


def _blazeface_candidates(
    rgb: np.ndarray, config: DetectConfig, floor: float
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """BlazeFace on every tile of every level, merged: ``(score, box, keypoints)`` in image pixels
    (box by its outer edges ``x0, y0, x1, y1``; keypoints at pixel centres), best first.

    A candidate whose box crosses a tile side that is not the image's border is dropped: that face is
    cut there, and whole in a neighbouring tile or a coarser level.
    """
    import torch

    from realface.nn.blazeface import INPUT_SIZE as N
    from realface.nn.blazeface import preprocess

    tiles = _tiles(rgb, config)
    model = _blazeface_model()
    all_scores, all_boxes, all_kps = [], [], []
    batch = 16
    for start in range(0, len(tiles), batch):
        chunk = tiles[start : start + batch]
        x = preprocess(np.stack([t.image for t in chunk])).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            logits, regress = model(x)  # [B, 2304], [B, 2304, 16]
        for t, lg, rg in zip(chunk, logits.numpy(), regress.numpy(), strict=True):
            scores, boxes, kps = _decode(lg, rg, floor)
            if not len(scores):
                continue
            inside = np.ones(len(scores), bool)
            for side, (inner, col, limit) in enumerate(zip(t.inner, (0, 1, 2, 3), (0, 0, N, N), strict=True)):
                if inner:
                    inside &= boxes[:, col] >= limit if side < 2 else boxes[:, col] <= limit
            scores, boxes, kps = scores[inside], boxes[inside], kps[inside]
            scale = np.array([t.fx, t.fy])
            offset = np.array([t.x, t.y]) * scale
            all_scores.append(scores)
            all_boxes.append(boxes * np.tile(scale, 2) + np.tile(offset, 2))
            all_kps.append(kps * scale + offset - 0.5)  # edges → pixel-centre coordinates
    if not all_scores:
        return []
    return _weighted_nms(
        np.concatenate(all_scores), np.concatenate(all_boxes), np.concatenate(all_kps), config.nms_iou
    )


def _run_blazeface(rgb: np.ndarray, config: DetectConfig, source: str) -> list[Detection]:
    threshold = config.score_threshold
    found = []
    for score, box, kps in _blazeface_candidates(rgb, config, min(threshold, BLAZEFACE_LOG_FLOOR)):
        det = Detection(
            box=dlib_box_from_blazeface(box),
            score=score,
            detector="blazeface",
            keypoints=tuple((float(x), float(y)) for x, y in kps),
        )
        if score < threshold:
            logger.info(
                "%s: a face candidate at box %s scored %.3f, under the threshold %.2f: not kept",
                source,
                list(det.box),
                score,
                threshold,
            )
            continue
        small = min(det.width, det.height) < config.min_face_size  # dropped by detect_faces anyway
        if score < config.sure_score and not small and not dlib_confirms(rgb, det, source=source):
            logger.info(
                "%s: a face candidate at box %s scored %.3f (under %.2f) and neither dlib detector "
                "confirms it on its crop: not kept",
                source,
                list(det.box),
                score,
                config.sure_score,
            )
            continue
        found.append(det)
    return found


def _overlaps(rect: Any, box: tuple[float, float, float, float]) -> bool:
    """Whether a dlib rectangle overlaps ``box`` (x0, y0, x1, y1 edges) by more than 0.3 IoU."""
    other = np.array([rect.left(), rect.top(), rect.right() + 1.0, rect.bottom() + 1.0])
    return bool(_iou(np.asarray(box, dtype=np.float64), other[None])[0] > 0.3)


def dlib_confirms(rgb: np.ndarray, detection: Detection, *, source: str = "image") -> bool:
    """Whether dlib finds a face at ``detection``'s box on a crop around it: the crop (one box side
    around the box) is scaled so that the box is :data:`VERIFY_SIDE` px wide, then dlib's HOG
    detector (margin at least 0) and, when HOG finds nothing there, its CNN detector (confidence at
    least 0) look at it; a find counts when it overlaps the box by more than 0.3 IoU. The second
    stage of BlazeFace candidates under ``DetectConfig.sure_score``; costs about 0.01 s (HOG) and
    0.4 s (CNN) of CPU per candidate, whatever the image's size.
    """
    from PIL import Image

    left, top, right, bottom = detection.box
    x0, y0, x1, y1 = _crop_around(rgb.shape, detection.box)
    scale = VERIFY_SIDE / detection.width
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    crop = np.asarray(Image.fromarray(rgb[y0:y1, x0:x1]).resize(size, Image.Resampling.BILINEAR))
    box = ((left - x0) * scale, (top - y0) * scale, (right + 1 - x0) * scale, (bottom + 1 - y0) * scale)
    if min(size) < MIN_DETECT_SIDE:
        return False
    hog = _hog_detector()
    rects, _, _ = _dlib_call(source, "HOG face detector", lambda: hog.run(crop, 0, 0.0))
    if any(_overlaps(r, box) for r in rects):
        return True
    cnn = _cnn_detector()
    found = _dlib_call(source, "CNN face detector", lambda: cnn(crop, 0))
    return any(d.confidence >= 0 and _overlaps(d.rect, box) for d in found)


@dataclasses.dataclass(frozen=True)
class DetectorSpec:
    """A registered face detector.

    Attributes:
        name: the value of ``DetectConfig.detector``.
        run: ``run(rgb, config, source)`` → detections scoring at least ``config.score_threshold``
            (any size; :func:`detect_faces` drops the small ones and sorts).
        default_threshold: the threshold when ``DetectConfig.threshold`` is ``None``.
        weights: registry ids of the files it needs.
        description: one line for help texts.
    """

    name: str
    run: Callable[[np.ndarray, DetectConfig, str], list[Detection]]
    default_threshold: float
    weights: tuple[str, ...]
    description: str


DETECTORS: dict[str, DetectorSpec] = {}
"""Registered detectors by name (see :func:`register_detector`)."""


def register_detector(spec: DetectorSpec) -> DetectorSpec:
    """Add a detector to :data:`DETECTORS` (a name may be registered once)."""
    if spec.name in DETECTORS:
        raise ValueError(f"detector {spec.name!r} is already registered")
    DETECTORS[spec.name] = spec
    return spec


register_detector(
    DetectorSpec(
        "blazeface",
        _run_blazeface,
        BLAZEFACE_THRESHOLD,
        ("blazeface-full-range", "dlib-lm68", "dlib-mmod"),  # dlib's CNN: the second stage
        "MediaPipe BlazeFace full-range on tiles (default; turned heads, large canvases)",
    )
)
register_detector(
    DetectorSpec("hog", _run_hog, 0.0, ("dlib-lm68", "dlib-mmod"), "dlib HOG, CNN fallback (frontal faces)")
)
register_detector(DetectorSpec("cnn", _run_cnn_only, 0.0, ("dlib-lm68", "dlib-mmod"), "dlib CNN (MMOD)"))


def detect_faces(
    rgb: np.ndarray, config: DetectConfig | None = None, *, source: str = "image"
) -> list[Detection]:
    """All faces in an image, largest first.

    Args:
        rgb: ``[H, W, 3]`` uint8 RGB.
        config: :class:`DetectConfig` (its ``detector`` chooses among :data:`DETECTORS`).
        source: how messages name the image (usually its file name).

    Returns:
        Detections scoring at least ``config.score_threshold`` whose sides are at least
        ``config.min_face_size`` pixels, sorted by box area, largest first (with ``hog``: HOG results;
        CNN results only when HOG found no face at all). An empty list when none is found (at once,
        without running a detector, when the image's shorter side is below
        :func:`smallest_image_side`); a debug message notes faces dropped as too small, an info
        message each BlazeFace candidate under the threshold.

    Raises:
        FaceError: dlib failed on the image (its own message is not passed on).
    """
    config = config or DetectConfig()
    rgb = _check_rgb8(rgb)
    if min(rgb.shape[:2]) < smallest_image_side(config):
        logger.debug("%s: %dx%d is too small to hold a face", source, rgb.shape[1], rgb.shape[0])
        return []
    found = DETECTORS[config.detector].run(rgb, config, source)
    kept = [d for d in found if min(d.width, d.height) >= config.min_face_size]
    if len(kept) < len(found):
        logger.debug("dropped %d face(s) smaller than %d px", len(found) - len(kept), config.min_face_size)
    return sorted(kept, key=lambda d: d.area, reverse=True)


def _crop_around(shape: tuple[int, ...], box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """A region ``(x0, y0, x1, y1)`` (end exclusive) holding ``box`` and one box side around it."""
    left, top, right, bottom = box
    m = max(right - left, bottom - top) + 1
    return max(left - m, 0), max(top - m, 0), min(right + m + 1, shape[1]), min(bottom + m + 1, shape[0])


ROLL_LIMIT = 10.0
"""Degrees: a BlazeFace detection whose eye keypoints tilt more than this is levelled before the
68-point fit (dlib's predictor was trained on upright faces)."""


def _roll_degrees(detection: Detection) -> float:
    """Tilt of the line from the image-left eye keypoint to the image-right one (clockwise, degrees)."""
    if detection.keypoints is None:
        return 0.0
    (x0, y0), (x1, y1) = detection.keypoints[0], detection.keypoints[1]
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


def _rotate_points(points: np.ndarray, centre: tuple[float, float], degrees: float) -> np.ndarray:
    """Points ``[K, 2]`` turned clockwise on screen (y down) by ``degrees`` about ``centre``."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    d = np.asarray(points, dtype=np.float64) - centre  # [K, 2]
    return np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]], axis=1) + centre


def find_landmarks(rgb: np.ndarray, detection: Detection, *, source: str = "image") -> np.ndarray:
    """The 68 dlib landmarks ``[68, 2]`` float64 ``(x, y)`` of one detected face.

    The predictor runs on a crop of the image around the box (one box side on each side; its
    regression trees look at pixels near the face only), so its cost follows the face, not the image.
    A BlazeFace detection tilted more than :data:`ROLL_LIMIT` degrees (by its eye keypoints) is
    levelled first: the crop is turned about the box centre, fitted, and the points turned back.

    Raises:
        FaceError: dlib failed on the image; the message names ``source``.
    """
    import dlib
    from PIL import Image

    rgb = _check_rgb8(rgb)
    left, top, right, bottom = detection.box
    x0, y0, x1, y1 = _crop_around(rgb.shape, detection.box)
    crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])  # [h, w, 3]
    roll = _roll_degrees(detection)
    centre = ((left + right) / 2 - x0, (top + bottom) / 2 - y0)  # in crop pixels
    if abs(roll) > ROLL_LIMIT:
        # PIL turns counter-clockwise on screen by ``roll`` about its centre given in pixel-edge units.
        turned = Image.fromarray(crop).rotate(
            roll, Image.Resampling.BILINEAR, center=(centre[0] + 0.5, centre[1] + 0.5)
        )
        crop = np.asarray(turned)
    predictor = _shape_predictor()
    rect = dlib.rectangle(left - x0, top - y0, right - x0, bottom - y0)
    shape = _dlib_call(source, "landmark predictor", lambda: predictor(crop, rect))
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)  # [68, 2] in crop pixels
    if abs(roll) > ROLL_LIMIT:
        points = _rotate_points(points, centre, roll)  # back to the tilted face
    return points + [x0, y0]  # [68, 2]


def keypoint_disagreement(landmarks: np.ndarray, detection: Detection) -> float:
    """The largest distance, in box widths, between the 68-point fit's eye centres, nose tip and mouth
    centre and BlazeFace's keypoints for them (0 when the detection has no keypoints)."""
    if detection.keypoints is None:
        return 0.0
    lm = np.asarray(landmarks, dtype=np.float64)  # [68, 2]
    kp = np.asarray(detection.keypoints, dtype=np.float64)  # [6, 2]
    ours = np.stack(
        [lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[[48, 51, 54, 57]].mean(0)]
    )  # [4, 2]: image-left eye (the subject's right), image-right eye, nose tip, mouth centre
    return float(np.linalg.norm(ours - kp[:4], axis=1).max() / detection.width)


def find_faces(rgb: np.ndarray, config: DetectConfig | None = None, *, source: str = "image") -> list[Face]:
    """Detect faces and their landmarks, largest first.

    A BlazeFace detection whose 68-point fit disagrees with its keypoints by more than
    ``config.keypoint_tolerance`` box widths is dropped, with a warning naming its box.

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
        if config.detector == "hog":
            detectors = "HOG and CNN detectors" if config.cnn_fallback else "HOG detector"
        else:
            detectors = {"blazeface": "BlazeFace", "cnn": "CNN"}[config.detector] + " detector"
        raise FaceError(
            f"{source}: no face of at least {config.min_face_size} px found (tried the {detectors}, "
            f"threshold {config.score_threshold:g}); the face may be too small, turned away or occluded"
        )
    faces = []
    for d in detections:
        lm = find_landmarks(rgb, d, source=source)
        off = keypoint_disagreement(lm, d)
        if off > config.keypoint_tolerance:
            logger.warning(
                "%s: the landmarks of the face at box %s (score %.3f) disagree with the detector's "
                "keypoints by %.2f box widths (tolerance %.2f): face skipped",
                source,
                list(d.box),
                d.score,
                off,
                config.keypoint_tolerance,
            )
            continue
        faces.append(
            Face(
                box=d.box,
                score=d.score,
                detector=d.detector,
                landmarks=tuple((float(x), float(y)) for x, y in lm),
            )
        )
    if not faces:
        raise FaceError(f"{source}: no face with landmarks that agree with the detector's keypoints")
    return faces
