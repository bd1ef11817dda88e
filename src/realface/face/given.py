"""Faces chosen by a person: read from FACES.json files instead of detected (``realface apply --faces``).

Two formats are read:

- the JSON that ``realface align`` writes, one face per file (``NAME_faceI.json``, format
  ``realface.face/1``; see :mod:`realface.face.meta`): its 68 landmarks are used as they are;
- a simple format for boxes or landmarks from any other tool, several faces per file::

      {"format": "realface.faces/1", "image": "look.jpg", "image_size": [4000, 6000],
       "faces": [{"box_ltrb": [1200, 800, 1350, 950]},
                 {"landmarks_68": [[x, y], ...], "score": 0.9}]}

  ``image_size`` is optional; each face gives ``box_ltrb`` (``left, top, right, bottom``, inclusive
  corners as dlib's) and/or ``landmarks_68``; with a box only, dlib's 68 points are fitted in it
  (:func:`realface.face.detect.find_landmarks`). ``score`` is optional (default 1).

Coordinates are image pixels with pixel centres at integer coordinates, ``(x, y)``, as everywhere in
:mod:`realface.face`. Every file names its image (``image``, the file name without folders): a file
made for another image, or for another size of it, is refused.

A faces source is a file or a folder. A folder holds, for an image ``STEM.EXT``, either
``STEM_face0.json``, ``STEM_face1.json``… (as ``align`` writes them into its ``-o`` folder) or one
``STEM.faces.json``; faces come in file order (``face0`` first). An image without such a file, or
with both kinds, is refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from realface.errors import FaceError
from realface.face import meta as _meta
from realface.face.detect import Detection, Face, find_landmarks

__all__ = ["FACES_FORMAT", "faces_files", "load_given_faces"]

FACES_FORMAT = "realface.faces/1"
MAX_GIVEN_FACES = 1000


def faces_files(source: Path, image: Path) -> list[Path]:
    """The FACES.json files of ``image`` in ``source`` (a file: itself; a folder: see the module).

    Raises:
        FaceError: ``source`` does not exist, or the folder has no file (or both kinds) for ``image``.
    """
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FaceError(f"{source}: no such faces file or folder")
    pattern = re.compile(re.escape(image.stem) + r"_face(\d+)\.json")
    per_face = sorted(
        (int(m.group(1)), p)
        for p in source.iterdir()
        if (m := pattern.fullmatch(p.name)) is not None and p.is_file()
    )
    simple = source / f"{image.stem}.faces.json"
    if per_face and simple.is_file():
        raise FaceError(
            f"{image}: both {simple.name} and {per_face[0][1].name} are in {source}; keep one kind"
        )
    if simple.is_file():
        return [simple]
    if not per_face:
        raise FaceError(
            f"{image}: no faces file for it in {source} (expected {image.stem}_face0.json or "
            f"{image.stem}.faces.json)"
        )
    return [p for _, p in per_face]


def _read_json(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            raw = f.read(_meta.MAX_META_BYTES + 1)
    except OSError as exc:
        raise FaceError(f"{path}: cannot read the faces file ({exc.strerror or exc})") from None
    if len(raw) > _meta.MAX_META_BYTES:
        raise FaceError(f"{path}: not a faces file (larger than {_meta.MAX_META_BYTES // 1024} kB)")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FaceError(f"{path}: not a faces file (not valid UTF-8 JSON)") from None


def _simple_faces(
    d: dict, size: tuple[int, int]
) -> list[tuple[tuple[int, int, int, int] | None, Any, float]]:
    """``(box, landmarks [68, 2] or None, score)`` of a ``realface.faces/1`` dict (schema-checked)."""
    d = _meta._obj(d, "the file", ("format", "image", "faces"), ("image_size",))
    faces = d["faces"]
    if not isinstance(faces, list) or not 1 <= len(faces) <= MAX_GIVEN_FACES:
        raise _meta._Bad(f"'faces' must be a list of 1 to {MAX_GIVEN_FACES} faces")
    out = []
    m = int(_meta.COORD_MARGIN * max(size))
    for i, f in enumerate(faces):
        where = f"faces[{i}]"
        f = _meta._obj(f, where, (), ("box_ltrb", "landmarks_68", "score"))
        if "box_ltrb" not in f and "landmarks_68" not in f:
            raise _meta._Bad(f"{where} needs 'box_ltrb' or 'landmarks_68'")
        box = None
        if "box_ltrb" in f:
            b = f["box_ltrb"]
            if not isinstance(b, list) or len(b) != 4:
                raise _meta._Bad(f"{where}.box_ltrb must be [left, top, right, bottom]")
            left, top, right, bottom = (
                _meta._int(v, f"{where}.box_ltrb[{k}]", -m, max(size) + m) for k, v in enumerate(b)
            )
            if right - left < 1 or bottom - top < 1:
                raise _meta._Bad(f"{where}.box_ltrb {b} is empty (right <= left or bottom <= top)")
            box = (left, top, right, bottom)
        lms = None
        if "landmarks_68" in f:
            lms = np.array(_meta._points(f["landmarks_68"], f"{where}.landmarks_68", 68, size))  # [68, 2]
        score = _meta._num(f["score"], f"{where}.score") if "score" in f else 1.0
        out.append((box, lms, score))
    return out


def load_given_faces(source: Path, image: Path, size: tuple[int, int], rgb: np.ndarray) -> list[Face]:
    """The faces that ``source`` (a FACES.json file or folder) gives for ``image`` of ``size`` (W, H),
    in file order; ``rgb`` [H, W, 3] uint8 is the image, for fitting 68 points in a given box.

    Raises:
        FaceError: one line naming the file: unreadable, not a faces file, made for another image or
            another size, or a value out of its schema (the key is named).
    """
    faces: list[Face] = []
    for path in faces_files(source, image):
        d = _read_json(path)
        fmt = d.get("format") if isinstance(d, dict) else None
        if fmt not in (_meta.FORMAT, FACES_FORMAT):
            raise FaceError(
                f"{path}: not a faces file (expected format {FACES_FORMAT!r} or {_meta.FORMAT!r}, "
                f"as `realface align` writes)"
            )
        name = d.get("image")
        if name != image.name:
            raise FaceError(f"{path}: made for the image {name!r}, not {image.name!r}")
        given = d.get("image_size")
        if given is not None and given != list(size):
            raise FaceError(f"{path}: made for a {given} image; {image.name} is {list(size)}")
        if fmt == _meta.FORMAT:
            faces.append(_meta.FaceMeta.load(path).face)
            continue
        try:
            records = _simple_faces(d, size)
        except _meta._Bad as exc:
            raise FaceError(f"{path}: invalid faces file: {exc}") from None
        for box, lms, score in records:
            if lms is None:
                assert box is not None
                lms = find_landmarks(rgb, Detection(box, score, "given"), source=str(path))
            if box is None:
                (x0, y0), (x1, y1) = lms.min(0), lms.max(0)
                box = (int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
            faces.append(Face(box, score, "given", tuple((float(x), float(y)) for x, y in lms)))
    return faces
