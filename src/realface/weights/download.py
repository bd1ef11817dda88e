"""Downloads of a record's file over :mod:`realface.utils.http`: each mirror in turn, the body streamed into
``<file>.part`` (resumed with ``Range``, retried with backoff), verified (size, sha256, content), then renamed
into place. Redirects are followed only to the record's hosts; a record without an exact size is bounded by
:func:`byte_limit`."""

from __future__ import annotations

import logging
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realface.utils import http
from realface.utils.http import MAX_REDIRECTS
from realface.weights.cache import sha256_file
from realface.weights.content import check_content
from realface.weights.errors import ChecksumError, DownloadError, WrongFileError
from realface.weights.registry import WeightRecord

__all__ = ["DownloadOptions", "download_record", "byte_limit", "MAX_REDIRECTS", "UNKNOWN_SIZE_FACTOR"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DownloadOptions(http.RetryPolicy):
    """Network behaviour of weight downloads: a :class:`~realface.utils.http.RetryPolicy` with defaults for
    large files (timeout 30 s, 5 retries, backoff 1 s doubled up to 60 s, 1 MiB chunks, no bound on attempts
    that make progress; retries logged as warnings)."""

    retries: int = 5
    max_backoff: float = 60.0
    chunk_size: int = 1 << 20

    @classmethod
    def from_env(cls) -> DownloadOptions:
        """Defaults overridden by ``REALFACE_HTTP_TIMEOUT``, ``REALFACE_HTTP_RETRIES`` and
        ``REALFACE_HTTP_BACKOFF``."""
        kw: dict[str, Any] = {}
        for var, name, typ in (
            ("REALFACE_HTTP_TIMEOUT", "timeout", float),
            ("REALFACE_HTTP_RETRIES", "retries", int),
            ("REALFACE_HTTP_BACKOFF", "backoff", float),
        ):
            value = os.environ.get(var, "")
            if value:
                try:
                    kw[name] = typ(value)
                except ValueError:
                    raise DownloadError(f"{var}={value!r} is not a valid {typ.__name__}") from None
        return cls(**kw)


UNKNOWN_SIZE_FACTOR = 2.0
"""A record without an exact size may send at most this multiple of its ``approx_size``."""

UNKNOWN_SIZE_CEILING = 4 << 30
"""The most bytes a record with neither ``size`` nor ``approx_size`` may send (4 GiB)."""


def byte_limit(record: WeightRecord) -> int:
    """The most bytes a download of ``record`` may deliver: its exact size when published, else
    :data:`UNKNOWN_SIZE_FACTOR` times its approximate size, else :data:`UNKNOWN_SIZE_CEILING`."""
    if record.size is not None:
        return record.size
    if record.approx_size:
        return int(record.approx_size * UNKNOWN_SIZE_FACTOR)
    return UNKNOWN_SIZE_CEILING


def _open(request: urllib.request.Request, timeout: float, hosts: frozenset[str]) -> Any:
    """Open one request, following redirects only to ``hosts`` (the record's)."""
    return http.open_url(request, timeout, hosts)


def _size_problem(record: WeightRecord, exc: http.BadSize) -> str:
    """The core's size refusal in the registry's words."""
    if exc.exact:
        if exc.announced is None:
            return f"server sent more than the expected {exc.limit:,} bytes; the partial file was deleted"
        return f"server announces {exc.announced:,} bytes, the registry expects {exc.limit:,}"
    why = f"{UNKNOWN_SIZE_FACTOR:g} x its approximate size" if record.approx_size else "its size is unknown"
    if exc.announced is None:
        return (
            f"server sent more than the {exc.limit:,} bytes accepted for {record.id!r} ({why}); "
            "the partial file was deleted"
        )
    return (
        f"server announces {exc.announced:,} bytes, more than the {exc.limit:,} accepted for {record.id!r} "
        f"({why})"
    )


def _download_url(
    url: str, part: Path, record: WeightRecord, options: DownloadOptions, progress: bool
) -> None:
    """One mirror into ``part``; raises :class:`~realface.utils.http.TransferError` when it cannot deliver
    (and ``OSError`` when the part cannot be written)."""
    try:
        http.download(
            url,
            part,
            options,
            purpose="weights download",
            max_bytes=byte_limit(record),
            size=record.size,
            opener=lambda request, timeout: _open(request, timeout, record.allowed_hosts),
            progress=record.id if progress else None,
        )
    except http.BadSize as exc:
        raise http.TransferError(_size_problem(record, exc)) from None


def _check_part(record: WeightRecord, part: Path) -> tuple[str, str]:
    """``(sha256, "")`` when a complete part file is the record's file, else ``("", what is wrong)``."""
    size = part.stat().st_size
    if record.size is not None and size != record.size:
        return "", f"got {size:,} bytes, expected {record.size:,}; the partial file was deleted"
    digest = sha256_file(part)
    if not record.hash_matches(digest):
        return "", (
            f"sha256 {digest} does not match the expected {record.expected_hash_text()}; "
            "the downloaded file was deleted"
        )
    if not record.pinned:
        try:
            check_content(record, part)
        except WrongFileError as exc:
            return "", f"{exc}; the downloaded file was deleted"
    return digest, ""


def download_record(
    record: WeightRecord,
    dest: Path,
    *,
    options: DownloadOptions | None = None,
    progress: bool = True,
) -> str:
    """Download ``record`` to ``dest`` and return its sha256; the caller holds the file's lock.

    Tries each of :attr:`WeightRecord.download_urls` in order. The body streams into ``<dest>.part``
    (resumed on the next attempt), its size and hash are checked, and only then is it renamed to ``dest``.
    A part file whose hash is wrong is deleted. Raises :class:`ChecksumError` when a complete download had
    the wrong hash, :class:`DownloadError` when no URL delivered the file.
    """
    options = options or DownloadOptions.from_env()
    urls = record.download_urls
    if not urls:
        raise DownloadError(f"weight {record.id!r} has no URL that realface can download from")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = http.part_path(dest)
    problems: list[str] = []
    bad_hash = False
    for i, url in enumerate(urls):
        if i > 0 and not record.pinned and part.exists():
            part.unlink()  # never splice bytes from two mirrors when the result cannot be checked
        log.info("downloading %s from %s", record.id, url)
        try:
            _download_url(url, part, record, options, progress)
        except http.TransferError as exc:
            problems.append(f"{url}: {exc}")
            continue
        digest, problem = _check_part(record, part)
        if problem:
            part.unlink()
            problems.append(f"{url}: {problem}")
            bad_hash = True
            continue
        http.promote(part, dest)
        return digest
    summary = " | ".join(problems)
    if bad_hash:
        raise ChecksumError(f"download of {record.id!r} refused: {summary}")
    raise DownloadError(
        f"could not download {record.id!r} ({summary}); check the network or proxy, then run "
        f"`realface weights fetch {record.id}` again (a partial download is resumed)"
    )
