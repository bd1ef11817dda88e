"""The ``--meta`` JSON written by ``realface align`` and read by ``realface paste``.

One file per aligned face: the source image's name and size, the face's index in the image, and the
:class:`~realface.face.detect.Face` record (box, score, detector, 68 landmarks, alignment with its
``aligned_from_image`` matrix). Floats are written with full precision, so the round trip is exact.

A meta file is user input: :meth:`FaceMeta.load` checks it against one schema before anything uses
it (:func:`check_meta_dict`): the keys and their types, finite numbers, an image size and an
``output_size`` within bounds, landmarks, box and quad within a few image sizes of the image they
refer to, and a quad that is a proper (convex, not collapsed) quadrilateral.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from realface.errors import FaceError
from realface.face.detect import Face
from realface.utils.fs import atomic_write_text

__all__ = ["FaceMeta", "FORMAT", "check_meta_dict", "MAX_META_BYTES", "MAX_OUTPUT_SIZE"]

FORMAT = "realface.face/1"
MAX_META_BYTES = 1 << 20  # a real meta file is about 6 kB
MAX_IMAGE_SIDE = 1 << 16
MAX_OUTPUT_SIZE = 4096
MIN_OUTPUT_SIZE = 16
#: Coordinates may lie this many image sizes beyond the image (FFHQ quads of large faces near the
#: border reach outside it; nothing real reaches this far).
COORD_MARGIN = 2.0
MIN_QUAD_SIDE = 2.0  # pixels
MAX_FACE_INDEX = 100_000


class _Bad(ValueError):
    """A schema violation; the message names the key."""


def _obj(d: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    if not isinstance(d, dict):
        raise _Bad(f"{where} must be a JSON object, got {_kind(d)}")
    missing = [k for k in required if k not in d]
    if missing:
        raise _Bad(f"{where} lacks the key(s) {', '.join(repr(k) for k in missing)}")
    unknown = sorted(str(k) for k in d if k not in required and k not in optional)
    if unknown:
        raise _Bad(f"{where} has unknown key(s) {', '.join(repr(k) for k in unknown[:5])}")
    return d


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number"
    )


def _int(v: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(f"{where} must be an integer, got {_kind(v)}")
    if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
        raise _Bad(f"{where} must be an integer, got {v!r}")
    if not lo <= v <= hi:
        raise _Bad(f"{where} = {_show(v)} is outside {lo}..{hi}")
    return int(v)


def _show(v: float) -> str:
    return f"{v:.6g}" if abs(v) < 1e300 else "a huge number"


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(f"{where} must be a number, got {_kind(v)}")
    f = float(v)
    if not math.isfinite(f):
        raise _Bad(f"{where} must be a finite number, got {v!r}")
    return f


def _points(v: Any, where: str, count: int, size: tuple[int, int]) -> list[tuple[float, float]]:
    if not isinstance(v, list) or len(v) != count:
        n = len(v) if isinstance(v, list) else None
        raise _Bad(f"{where} must be a list of {count} (x, y) points, got {_kind(v) if n is None else n}")
    out = []
    for i, p in enumerate(v):
        if not isinstance(p, list) or len(p) != 2:
            raise _Bad(f"{where}[{i}] must be an (x, y) pair")
        x, y = _num(p[0], f"{where}[{i}].x"), _num(p[1], f"{where}[{i}].y")
        _in_range(x, y, f"{where}[{i}]", size)
        out.append((x, y))
    return out


def _in_range(x: float, y: float, where: str, size: tuple[int, int]) -> None:
    w, h = size
    m = COORD_MARGIN * max(w, h)
    if not (-m <= x <= w - 1 + m and -m <= y <= h - 1 + m):
        raise _Bad(
            f"{where} = ({x:.6g}, {y:.6g}) lies far outside the {w}x{h} image it refers to "
            f"(more than {COORD_MARGIN:g} image sizes away)"
        )


def _check_quad(quad: list[tuple[float, float]], where: str) -> None:
    sides = [math.dist(quad[i], quad[(i + 1) % 4]) for i in range(4)]
    if min(sides) < MIN_QUAD_SIDE:
        raise _Bad(f"{where} is degenerate (a side is {min(sides):.3g} px long)")
    crosses = []
    for i in range(4):
        (ax, ay), (bx, by), (cx, cy) = quad[i], quad[(i + 1) % 4], quad[(i + 2) % 4]
        crosses.append((bx - ax) * (cy - by) - (by - ay) * (cx - bx))
    # Convex and not folded: every turn in the same direction, and no corner nearly flat.
    longest = max(sides)
    if (
        not (all(c > 0 for c in crosses) or all(c < 0 for c in crosses))
        or min(abs(c) for c in crosses) < 0.05 * longest**2
    ):
        raise _Bad(f"{where} is not a proper quadrilateral (collapsed, folded or self-intersecting)")


def check_meta_dict(d: Any) -> None:
    """Raise :class:`ValueError` naming the first key that violates the meta schema."""
    d = _obj(d, "the file", ("format", "image", "image_size", "face_index", "face"))
    if d["format"] != FORMAT:
        raise _Bad(f"expected format {FORMAT!r}, got {d['format']!r}")
    if not isinstance(d["image"], str) or not d["image"] or len(d["image"]) > 4096:
        raise _Bad("'image' must be the source image's file name")
    size_v = d["image_size"]
    if not isinstance(size_v, list) or len(size_v) != 2:
        raise _Bad("'image_size' must be [width, height]")
    size = (
        _int(size_v[0], "image_size width", 1, MAX_IMAGE_SIDE),
        _int(size_v[1], "image_size height", 1, MAX_IMAGE_SIDE),
    )
    _int(d["face_index"], "'face_index'", 0, MAX_FACE_INDEX)
    face = _obj(d["face"], "'face'", ("box_ltrb", "score", "detector", "landmarks_68", "alignment"))
    box = face["box_ltrb"]
    if not isinstance(box, list) or len(box) != 4:
        raise _Bad("face.box_ltrb must be [left, top, right, bottom]")
    m = int(COORD_MARGIN * max(size))
    left, top, right, bottom = (_int(v, f"face.box_ltrb[{i}]", -m, max(size) + m) for i, v in enumerate(box))
    if right < left or bottom < top:
        raise _Bad(f"face.box_ltrb {box} has right < left or bottom < top")
    _num(face["score"], "face.score")
    if face["detector"] not in ("blazeface", "hog", "cnn", "given"):
        raise _Bad(f"face.detector must be 'blazeface', 'hog', 'cnn' or 'given', got {face['detector']!r}")
    _points(face["landmarks_68"], "face.landmarks_68", 68, size)
    al = face["alignment"]
    if al is None:
        raise _Bad("face.alignment is null (the face was never aligned)")
    al = _obj(
        al,
        "face.alignment",
        ("quad_tl_bl_br_tr", "output_size", "image_size", "aligned_from_image"),
        ("convention",),
    )
    quad = _points(al["quad_tl_bl_br_tr"], "face.alignment.quad_tl_bl_br_tr", 4, size)
    _check_quad(quad, "face.alignment.quad_tl_bl_br_tr")
    _int(al["output_size"], "face.alignment.output_size", MIN_OUTPUT_SIZE, MAX_OUTPUT_SIZE)
    if al["image_size"] != list(size):
        raise _Bad(f"face.alignment.image_size {al['image_size']!r} differs from image_size {list(size)}")
    mat = al["aligned_from_image"]
    if (
        not isinstance(mat, list)
        or len(mat) != 3
        or not all(isinstance(r, list) and len(r) == 3 for r in mat)
    ):
        raise _Bad("face.alignment.aligned_from_image must be a 3x3 matrix")
    for i, row in enumerate(mat):
        for j, v in enumerate(row):
            _num(v, f"face.alignment.aligned_from_image[{i}][{j}]")


@dataclasses.dataclass(frozen=True)
class FaceMeta:
    """Where an aligned crop came from: ``image`` (file name), ``image_size`` (W, H), ``face_index``, ``face``."""

    image: str
    image_size: tuple[int, int]
    face_index: int
    face: Face

    def __post_init__(self) -> None:
        if self.face.alignment is None:
            raise ValueError("FaceMeta needs an aligned face (face.alignment is None)")

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "image": self.image,
            "image_size": list(self.image_size),
            "face_index": self.face_index,
            "face": self.face.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> FaceMeta:
        """Build from a parsed meta file; :func:`check_meta_dict` first, so bad values raise ValueError."""
        check_meta_dict(d)
        size = tuple(int(v) for v in d["image_size"])
        return cls(str(d["image"]), size, int(d["face_index"]), Face.from_dict(d["face"]))  # type: ignore[arg-type]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FaceMeta:
        """Read a meta file; any problem raises :class:`FaceError` naming the file."""
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_META_BYTES + 1)
        except OSError as exc:
            raise FaceError(f"{path}: cannot read face metadata ({exc.strerror or exc})") from None
        if len(raw) > MAX_META_BYTES:
            raise FaceError(
                f"{path}: not a realface face metadata file (larger than {MAX_META_BYTES // 1024} kB)"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FaceError(f"{path}: not a realface face metadata file (not UTF-8 JSON text)") from None
        try:
            d = json.loads(text)  # NaN / Infinity parse; the schema check names the key
        except (ValueError, RecursionError) as exc:  # bad JSON, a 5000-digit number, deep nesting
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise FaceError(f"{path}: not a realface face metadata file ({why})") from None
        try:
            check_meta_dict(d)
        except _Bad as exc:
            raise FaceError(f"{path}: invalid face metadata: {exc}") from None
        try:
            return cls.from_dict(d)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FaceError(f"{path}: invalid face metadata: {exc}") from None
