"""Image folders and image pairs for the metrics, and the report files they write.

* :func:`list_images`: every image file under a folder, recursively, sorted by relative POSIX path.
  Hidden files and folders (name starting with ``.``) are skipped, so half-written ``.tmp`` files of
  atomic writers never count.
* :func:`match_pairs`: pairs ``(input, output)`` from two folders matched by relative path; when the
  output has another extension (``a/b.jpg`` ↔ ``a/b.png``) the pair is matched by relative path
  without suffix, provided that is unambiguous. :func:`read_pairs_csv` reads pairs from a CSV file.
* :func:`write_json` / :func:`write_csv`: atomic report writers.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from realface import imageio
from realface.errors import ConfigError
from realface.utils.fs import atomic_write_text

__all__ = [
    "ImagePair",
    "PairSet",
    "list_images",
    "match_pairs",
    "read_pairs_csv",
    "load_rgb01",
    "write_json",
    "write_csv",
]

log = logging.getLogger(__name__)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Every image file under ``folder`` (recursive; :func:`realface.imageio.list_images`), sorted by
    relative POSIX path.

    Raises:
        ConfigError: ``folder`` is not a directory, or holds no image.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder of images")
    files = imageio.list_images(root, recursive=True)
    if not files:
        raise ConfigError(f"{root}: no image files ({imageio.image_suffixes_text()}) found")
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def load_rgb01(path: str | os.PathLike) -> np.ndarray:
    """An image file as float32 RGB in [0, 1], ``[H, W, 3]`` (grayscale replicated, alpha dropped,
    EXIF orientation applied, 16-bit kept at full precision). Raises :class:`ImageError` naming the file."""
    return imageio.load_image(path).rgb_float()  # [H, W, 3]


@dataclass(frozen=True)
class ImagePair:
    """One pair to compare: ``name`` (the input's relative path, or the CSV row label), two files."""

    name: str
    input: Path
    output: Path


@dataclass(frozen=True)
class PairSet:
    """Matched pairs plus the files left without a partner (reported, not compared)."""

    pairs: tuple[ImagePair, ...]
    unmatched_inputs: tuple[str, ...] = ()
    unmatched_outputs: tuple[str, ...] = ()


def match_pairs(inputs: str | os.PathLike, outputs: str | os.PathLike) -> PairSet:
    """Pair the images of two folders by relative path (then by relative path without suffix).

    Raises:
        ConfigError: a folder is missing or empty, or no pair could be matched.
    """
    in_root, out_root = Path(inputs), Path(outputs)
    ins = {p.relative_to(in_root).as_posix(): p for p in list_images(in_root)}
    outs = {p.relative_to(out_root).as_posix(): p for p in list_images(out_root)}
    out_by_stem: dict[str, list[str]] = {}
    for rel in outs:
        out_by_stem.setdefault(os.path.splitext(rel)[0], []).append(rel)
    pairs: list[ImagePair] = []
    used: set[str] = set()
    unmatched_in: list[str] = []
    for rel, path in ins.items():
        partner = rel if rel in outs else None
        if partner is None:
            candidates = [c for c in out_by_stem.get(os.path.splitext(rel)[0], []) if c not in ins]
            partner = candidates[0] if len(candidates) == 1 else None
        if partner is None or partner in used:
            unmatched_in.append(rel)
            continue
        used.add(partner)
        pairs.append(ImagePair(name=rel, input=path, output=outs[partner]))
    unmatched_out = sorted(set(outs) - used)
    if not pairs:
        raise ConfigError(
            f"no image of {in_root} has a partner with the same relative path in {out_root} "
            f"(e.g. {next(iter(ins))!r})"
        )
    if unmatched_in or unmatched_out:
        log.warning(
            "%d input(s) and %d output(s) have no partner and are not compared (e.g. %s)",
            len(unmatched_in),
            len(unmatched_out),
            (unmatched_in or unmatched_out)[0],
        )
    return PairSet(tuple(pairs), tuple(unmatched_in), tuple(unmatched_out))


def read_pairs_csv(path: str | os.PathLike) -> PairSet:
    """Pairs from a CSV file with a header row naming the columns ``input`` and ``output`` (other columns
    are ignored). Relative paths are resolved against the CSV file's folder. Files are not opened here;
    a missing file becomes a failed pair when it is compared.

    Raises:
        ConfigError: the file cannot be read, lacks the two columns, or has no rows.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the pairs CSV ({exc.strerror or exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"input", "output"} <= set(reader.fieldnames):
        raise ConfigError(
            f"{path}: a pairs CSV needs a header with the columns 'input' and 'output'; got {reader.fieldnames}"
        )
    pairs = []
    for i, row in enumerate(reader, start=2):
        a, b = (row.get("input") or "").strip(), (row.get("output") or "").strip()
        if not a or not b:
            raise ConfigError(f"{path}:{i}: empty 'input' or 'output'")
        pairs.append(ImagePair(name=a, input=path.parent / a, output=path.parent / b))
    if not pairs:
        raise ConfigError(f"{path}: no pairs (only a header)")
    return PairSet(tuple(pairs))


def _clean(value: Any) -> Any:
    """JSON-safe values: NaN/inf become null, numpy scalars and paths become plain types."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(dest: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON, atomically (non-finite numbers become ``null``)."""
    atomic_write_text(dest, json.dumps(_clean(data), indent=2, allow_nan=False) + "\n")
    return Path(dest)


def write_csv(dest: str | os.PathLike, rows: Sequence[Mapping[str, Any]], columns: Iterable[str]) -> Path:
    """Write ``rows`` (dicts) as CSV with a header of ``columns``, atomically; missing values are empty."""
    columns = list(columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else _clean(row.get(k))) for k in columns})
    atomic_write_text(dest, buf.getvalue())
    return Path(dest)
