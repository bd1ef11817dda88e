"""URL lists: reading what ``realface dataset build --urls`` takes, writing what ``export-urls`` publishes.

Three formats are read, chosen by the file's suffix:

* **JSON** (``.json``): a list whose entries are URL strings or objects, or an object with such a
  list under ``"images"`` (what :func:`write_url_list` writes). Object keys: ``url`` (required),
  ``sha256``, ``license`` (or ``licence``), ``source``, and ``faces``: a list of
  ``{"landmarks_68": [[x, y], ... 68 points]}`` that, when present, replaces face detection so that
  a published list rebuilds the same crops whatever the detector version. Other keys are ignored.
* **CSV** (``.csv``): a header row naming the columns; ``url`` is required, ``sha256``,
  ``license``/``licence``, ``source`` and ``faces`` (the JSON text of the list above) are optional.
* **Plain text** (any other suffix): one URL per line, optionally followed by whitespace and a
  sha256; blank lines and lines starting with ``#`` are skipped.

Only ``http`` and ``https`` URLs are accepted. A URL listed twice is kept once (the first entry
wins, a warning counts the repeats). Every error names the file and the line or entry.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from realface.errors import RealFaceError
from realface.utils.fs import atomic_write_text

__all__ = ["SourceItem", "UrlListError", "read_url_list", "write_url_list", "URL_LIST_FORMAT"]

logger = logging.getLogger(__name__)

URL_LIST_FORMAT = "realface-url-list/1"
"""The ``format`` tag of the JSON lists that :func:`write_url_list` writes."""

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_MAX_LIST_BYTES = 256 << 20  # a URL list larger than 256 MiB is not a URL list


class UrlListError(RealFaceError):
    """A URL list cannot be read: unknown layout, a bad URL or hash, a malformed entry."""


@dataclasses.dataclass(frozen=True)
class SourceItem:
    """One image to fetch.

    Attributes:
        url: ``http(s)`` URL of the image.
        sha256: expected SHA-256 of the file (64 lower-case hex digits), or ``None``.
        license: the image's licence as given by the list ("" when not given).
        source: where the image comes from (a page, a collection name; "" when not given).
        faces: published 68-point landmarks per face, ``((x, y), ...)`` in the image's pixels; when
            not empty, detection is skipped and exactly these faces are aligned.
    """

    url: str
    sha256: str | None = None
    license: str = ""
    source: str = ""
    faces: tuple[tuple[tuple[float, float], ...], ...] = ()


def _check_url(url: str, where: str) -> str:
    url = url.strip()
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UrlListError(f"{where}: {url!r} is not an http(s) URL")
    return url


def _check_sha(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if not _SHA256_RE.match(text):
        raise UrlListError(f"{where}: sha256 must be 64 hex digits; got {value!r}")
    return text


def _parse_faces(value: Any, where: str) -> tuple[tuple[tuple[float, float], ...], ...]:
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise UrlListError(f"{where}: 'faces' is not valid JSON ({exc.msg})") from None
    if not isinstance(value, list):
        raise UrlListError(f"{where}: 'faces' must be a list of {{'landmarks_68': [...]}} objects")
    faces = []
    for i, face in enumerate(value):
        points = face.get("landmarks_68") if isinstance(face, dict) else None
        try:
            pts = tuple((float(x), float(y)) for x, y in points)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            pts = ()
        if len(pts) != 68:
            raise UrlListError(f"{where}: face {i} needs 'landmarks_68' with 68 [x, y] points")
        faces.append(pts)
    return tuple(faces)


def _item(entry: Any, where: str) -> SourceItem:
    if isinstance(entry, str):
        return SourceItem(url=_check_url(entry, where))
    if not isinstance(entry, dict):
        raise UrlListError(
            f"{where}: expected a URL string or an object with 'url'; got {type(entry).__name__}"
        )
    if not entry.get("url"):
        raise UrlListError(f"{where}: entry has no 'url'")
    license = entry.get("license", entry.get("licence", "")) or ""
    return SourceItem(
        url=_check_url(str(entry["url"]), where),
        sha256=_check_sha(entry.get("sha256"), where),
        license=str(license).strip(),
        source=str(entry.get("source", "") or "").strip(),
        faces=_parse_faces(entry.get("faces"), where),
    )


def _read_json(text: str, path: Path) -> list[SourceItem]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UrlListError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(data, dict):
        data = data.get("images")
    if not isinstance(data, list):
        raise UrlListError(
            f"{path}: expected a JSON list of URLs or objects, or an object with an 'images' list"
        )
    return [_item(e, f"{path} entry {i}") for i, e in enumerate(data)]


def _read_csv(text: str, path: Path) -> list[SourceItem]:
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "url" not in fields:
        raise UrlListError(f"{path}: the CSV header must name a 'url' column; found {fields or 'no header'}")
    items = []
    for row in reader:
        clean = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(clean.values()):
            continue
        items.append(_item(clean, f"{path} line {reader.line_num}"))
    return items


def _read_text(text: str, path: Path) -> list[SourceItem]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"{path} line {number}"
        if len(parts) > 2:
            raise UrlListError(f"{where}: expected 'URL [sha256]'; got {len(parts)} fields")
        items.append(
            SourceItem(
                url=_check_url(parts[0], where),
                sha256=_check_sha(parts[1] if len(parts) > 1 else None, where),
            )
        )
    return items


def read_url_list(path: str | os.PathLike) -> list[SourceItem]:
    """Read a URL list (JSON, CSV or plain text; see the module docstring).

    Returns:
        The items in file order, each URL once.

    Raises:
        UrlListError: the file is missing, unreadable, empty, or has a malformed entry; the message
            names the file and the entry or line.
    """
    path = Path(path)
    try:
        if path.stat().st_size > _MAX_LIST_BYTES:
            raise UrlListError(f"{path}: larger than {_MAX_LIST_BYTES >> 20} MiB; is this a URL list?")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UrlListError(f"{path}: URL list not found") from None
    except UnicodeDecodeError:
        raise UrlListError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise UrlListError(f"{path}: cannot read the URL list ({exc.strerror or exc})") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        items = _read_json(text, path)
    elif suffix == ".csv":
        items = _read_csv(text, path)
    else:
        items = _read_text(text, path)
    unique: dict[str, SourceItem] = {}
    for item in items:
        unique.setdefault(item.url, item)
    if len(unique) < len(items):
        logger.warning("%s: %d repeated URL(s) ignored", path, len(items) - len(unique))
    if not unique:
        raise UrlListError(f"{path}: no URL found")
    return list(unique.values())


def write_url_list(entries: list[dict[str, Any]], dest: str | os.PathLike) -> Path:
    """Write a publishable URL list atomically: JSON (``.json``) or CSV (``.csv``).

    Args:
        entries: one dict per image with ``url``, ``sha256``, ``license``, ``source`` and ``faces``
            (a list of ``{"box_ltrb": [...], "landmarks_68": [...]}``).
        dest: the file; its suffix picks the format. In CSV the ``faces`` column holds JSON text.

    Returns:
        ``dest`` as a :class:`Path`. Both formats are read back by :func:`read_url_list`.
    """
    dest = Path(dest)
    suffix = dest.suffix.lower()
    if suffix == ".json":
        doc = {"format": URL_LIST_FORMAT, "images": entries}
        atomic_write_text(dest, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    elif suffix == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["url", "sha256", "license", "source", "faces"])
        for e in entries:
            faces = json.dumps(e.get("faces", []), separators=(",", ":"))
            writer.writerow(
                [e["url"], e.get("sha256") or "", e.get("license", ""), e.get("source", ""), faces]
            )
        atomic_write_text(dest, buf.getvalue())
    else:
        raise UrlListError(f"{dest}: choose a .json or .csv file name for the URL list")
    return dest
