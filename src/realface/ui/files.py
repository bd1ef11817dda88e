"""The files of the web UI: the app's own folder (:class:`Workspace`), the folders the batch tab may
touch, and the PNG previews shown in the page.

The app reads and writes only inside its working folder::

    workdir/
      uploads/        files received from the browser (Gradio's upload cache)
      previews/       detected-face previews
      runs/<run id>/  one folder per run: composites in the input's format, per-face PNGs, latents,
                      results.zip and run.json (the settings and models used)

The batch tab reads and writes folders of the server, but only below ``UIConfig.batch_root``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from realface.errors import ConfigError

if TYPE_CHECKING:
    from PIL import Image

    from realface.face import Face

__all__ = [
    "PREVIEW_SIDE",
    "Workspace",
    "draw_faces",
    "resolve_batch_folder",
    "unique_stems",
    "within",
    "write_preview",
]


class Workspace:
    """The app's own folder (see the module docstring). Created on first use."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(os.path.abspath(root))
        for sub in ("uploads", "previews", "runs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    def new_folder(self, kind: str) -> Path:
        """A fresh folder ``<kind>/<date-time>-<random>`` (unique even for simultaneous calls)."""
        name = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        folder = self.root / kind / name
        folder.mkdir(parents=True)
        return folder

    def contains(self, path: str | os.PathLike) -> bool:
        p = Path(os.path.realpath(path))
        return p == self.root or self.root in p.parents


def within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def resolve_batch_folder(root: Path, text: str, what: str, must_exist: bool) -> Path:
    """A folder typed in the batch tab, relative to ``root`` unless absolute; it must lie below ``root``
    (after resolving ``..`` and links) so the page cannot read or write elsewhere on the server."""
    text = (text or "").strip()
    if not text:
        raise ConfigError(f"{what}: enter a folder (relative to {root})")
    path = Path(os.path.realpath(root / os.path.expanduser(text)))
    real_root = Path(os.path.realpath(root))
    if not within(path, real_root):
        raise ConfigError(
            f"{what}: {text} is outside the batch folder {root} (start the UI with --batch-root)"
        )
    if must_exist and not path.is_dir():
        raise ConfigError(f"{what}: {path} is not a folder")
    return path


PREVIEW_SIDE = 2048
"""Longest side of the images shown in the page (downloads keep the full resolution)."""


def _shrink(rgb: np.ndarray, max_side: int) -> tuple[Image.Image, float]:
    """``(PIL image at most max_side px, scale)`` of an 8-bit RGB array."""
    from PIL import Image

    img = Image.fromarray(rgb)
    scale = min(1.0, max_side / max(img.size))
    if scale < 1:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR)
    return img, scale


def write_preview(rgb: np.ndarray, path: Path, max_side: int = PREVIEW_SIDE) -> Path:
    """An 8-bit PNG for the browser (which cannot show TIFF, and need not load a 100 MP image)."""
    from realface.utils.fs import atomic_path

    img, _ = _shrink(rgb, max_side)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def draw_faces(rgb: np.ndarray, faces: Sequence[Face], max_side: int = 1024) -> np.ndarray:
    """A preview: the image (at most ``max_side`` px) with each face's box, index and detector score."""
    from PIL import ImageDraw

    img, scale = _shrink(rgb, max_side)
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 300))
    for i, face in enumerate(faces):
        l, t, r, b = (v * scale for v in face.box)
        draw.rectangle([l, t, r, b], outline=(255, 40, 40), width=width)
        label = f"{i}  {face.score:.2f}"
        draw.rectangle([l, max(0, t - 14 - width), l + 14 + 6 * len(label), t], fill=(255, 40, 40))
        draw.text((l + 4, max(0, t - 13 - width)), label, fill=(255, 255, 255))
    return np.asarray(img)


def unique_stems(paths: Sequence[Path]) -> list[str]:
    stems, seen = [], set()
    for p in paths:
        stem, k = p.stem, 1
        while stem in seen:
            k += 1
            stem = f"{p.stem}-{k}"
        seen.add(stem)
        stems.append(stem)
    return stems
