"""The ``--meta`` JSON written by ``realface align`` and read by ``realface paste``.

One file per aligned face: the source image's name and size, the face's index in the image, and the
:class:`~realface.face.detect.Face` record (box, score, detector, 68 landmarks, alignment with its
``aligned_from_image`` matrix). Floats are written with full precision, so the round trip is exact.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from realface.errors import FaceError
from realface.face.detect import Face
from realface.utils.fs import atomic_write_text

__all__ = ["FaceMeta", "FORMAT"]

FORMAT = "realface.face/1"


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
        if d.get("format") != FORMAT:
            raise ValueError(f"expected format {FORMAT!r}, got {d.get('format')!r}")
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
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise FaceError(f"{path}: cannot read face metadata ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise FaceError(f"{path}: not a realface face metadata file (not UTF-8 JSON text)") from None
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FaceError(f"{path}: not a realface face metadata file ({exc})") from None
