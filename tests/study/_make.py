"""Tiny generated "methods" for the study tests: folders of small images that pair by relative path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Method names that occur nowhere else (paths, page texts), so a leak of one is unmistakable.
METHODS = ("zebramethod", "quokkamethod", "narwhalmethod")
KEYS = ("a", "b", "tops/c", "tops/d")


def make_methods(
    root: Path, methods=METHODS, keys=KEYS, size=(48, 40), extra: str | None = None
) -> list[Path]:
    """One folder per method under ``root`` with an image per key (a different colour per method,
    PNG for the first method and JPEG for the others, so pairing ignores the suffix). ``extra``: a key
    only the first method has."""
    rng = np.random.default_rng(0)
    folders = []
    for m, name in enumerate(methods):
        folder = root / name
        for key in (*keys, extra) if extra and m == 0 else keys:
            path = folder / (key + (".png" if m == 0 else ".jpg"))
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = np.full((size[1], size[0], 3), 60 + 60 * m, np.uint8)
            pixels += rng.integers(0, 20, pixels.shape, dtype=np.uint8)
            Image.fromarray(pixels).save(path)
        folders.append(folder)
    return folders
