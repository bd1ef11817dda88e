"""Streamed HTTP(S) downloads into ``<file>.part``: resumed with ``Range``, retried with backoff, verified
(size and sha256), then renamed into place. Only the standard library's ``urllib`` is used, so the usual
proxy variables (``https_proxy``, ``no_proxy``) apply."""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import random
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tqdm.auto import tqdm

from realface.weights.cache import sha256_file
from realface.weights.content import check_content
from realface.weights.errors import ChecksumError, DownloadError, WrongFileError
from realface.weights.registry import WeightRecord

__all__ = ["DownloadOptions", "download_record", "byte_limit", "MAX_REDIRECTS", "UNKNOWN_SIZE_FACTOR"]

log = logging.getLogger(__name__)

_CONTENT_RANGE_RE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_CONTENT_RANGE_416_RE = re.compile(r"^bytes\s+\*/(\d+)$")


@dataclass(frozen=True)
class DownloadOptions:
    """Network behaviour of downloads.

    Attributes:
        timeout: seconds to wait for a connection or for the next bytes of a response (default 30).
        retries: attempts per URL after a failure that made no progress (default 5); a failure after
            bytes arrived resets the count, because the next attempt resumes where it stopped.
        backoff: first wait in seconds before a retry, doubled per failure (default 1), with jitter.
        max_backoff: ceiling of a single wait (default 60).
        chunk_size: bytes read per call (default 1 MiB).
    """

    timeout: float = 30.0
    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    chunk_size: int = 1 << 20

    @classmethod
    def from_env(cls) -> DownloadOptions:
        """Defaults overridden by ``REALFACE_HTTP_TIMEOUT``, ``REALFACE_HTTP_RETRIES`` and
        ``REALFACE_HTTP_BACKOFF``."""
        kw: dict[str, float | int] = {}
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
        return cls(**kw)  # type: ignore[arg-type]


class _Transient(Exception):
    """Worth retrying: connection problems, time-outs, 5xx, truncated bodies."""


class _Fatal(Exception):
    """Not worth retrying this URL (4xx, wrong size announced); the next mirror may still work."""


MAX_REDIRECTS = 5
"""Redirects followed for one request; more is refused (a loop, or a chain nobody publishes)."""

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


class _RedirectRefused(Exception):
    pass


class _RecordRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to an http(s) URL on a host the record allows, at most
    :data:`MAX_REDIRECTS` times per request."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, hosts: frozenset[str]) -> None:
        super().__init__()
        self.hosts = hosts

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 (urllib's signature)
        target = urlparse(urllib.parse.urljoin(req.full_url, newurl))
        if target.scheme not in ("http", "https"):
            raise _RedirectRefused(f"refused a redirect to {newurl} (only http and https are followed)")
        host = (target.hostname or "").lower()
        if host not in self.hosts:
            allowed = ", ".join(sorted(self.hosts))
            raise _RedirectRefused(f"refused a redirect to host {host!r} (this record allows: {allowed})")
        if len(getattr(req, "redirect_dict", {})) >= MAX_REDIRECTS:
            raise _RedirectRefused(f"more than {MAX_REDIRECTS} redirects; gave up at {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(request: urllib.request.Request, timeout: float, hosts: frozenset[str]):
    """``urlopen`` with the record's redirect policy (proxies from the environment still apply)."""
    return urllib.request.build_opener(_RecordRedirects(hosts)).open(request, timeout=timeout)


def _user_agent() -> str:
    from realface import __version__

    return f"realface/{__version__} (weights download)"


def _sleep_before_retry(options: DownloadOptions, failures: int) -> None:
    delay = min(options.max_backoff, options.backoff * (2 ** max(failures - 1, 0)))
    time.sleep(delay * (0.75 + 0.5 * random.random()))


def _fetch_once(url: str, part: Path, record: WeightRecord, options: DownloadOptions, progress: bool) -> bool:
    """One request; appends to or restarts ``part``. Returns True when the body was complete; raises
    ``_Transient``/``_Fatal`` otherwise. Sets no state except the bytes in ``part``."""
    have = part.stat().st_size if part.exists() else 0
    if record.size is not None and have > record.size:
        log.warning("%s is larger than %s expects; starting over", part, record.id)
        part.unlink()
        have = 0
    if record.size is not None and have == record.size:
        return True  # a previous attempt finished the body but did not get to verify it
    if urlparse(url).scheme not in ("http", "https"):
        raise _Fatal("only http and https URLs are downloaded")
    limit = byte_limit(record)
    if have > limit:
        part.unlink()
        have = 0
    request = urllib.request.Request(
        url, headers={"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    )
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = _open(request, options.timeout, record.allowed_hosts)
    except _RedirectRefused as exc:
        raise _Fatal(str(exc)) from None
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:
            match = _CONTENT_RANGE_416_RE.match(exc.headers.get("Content-Range", "") or "")
            if match and int(match.group(1)) == have:
                return True  # the part file already holds the whole body
            part.unlink()
            raise _Transient(f"HTTP 416 for a resume at byte {have}; starting over") from None
        if exc.code >= 500 or exc.code in (408, 425, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise _Fatal(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, socket.gaierror):  # the host name does not resolve: no retry helps
            raise _Fatal(f"cannot resolve the host ({exc.reason})") from None
        raise _Transient(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Transient(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None

    with response:
        status = response.status
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if have and status == 206:
            match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", "") or "")
            if not match or int(match.group(1)) != have:
                part.unlink()
                raise _Transient(
                    f"server answered the resume at byte {have} with a different range; starting over"
                )
            mode = "ab"
            total = int(match.group(3)) if match.group(3) != "*" else None
        elif status == 200:
            if have:
                log.info("%s: server does not resume downloads; starting over", url)
            have, mode = 0, "wb"
            total = length
        else:
            raise _Transient(f"unexpected HTTP status {status}")
        if total is not None and record.size is not None and total != record.size:
            raise _Fatal(f"server announces {total:,} bytes, the registry expects {record.size:,}")
        if total is not None and record.size is None and total > limit:
            raise _Fatal(
                f"server announces {total:,} bytes, more than the {limit:,} accepted for {record.id!r} "
                f"({UNKNOWN_SIZE_FACTOR:g} x its approximate size)"
            )
        expected_total = total if total is not None else record.size
        received = 0
        with (
            open(part, mode) as f,
            tqdm(
                total=expected_total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=record.id,
                disable=not progress,
            ) as bar,
        ):
            while True:
                try:
                    chunk = response.read(options.chunk_size)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Transient(f"connection lost after {have + received:,} bytes ({exc})") from None
                if not chunk:
                    break
                try:
                    f.write(chunk)
                except OSError as exc:
                    raise DownloadError(f"cannot write {part}: {exc}") from exc
                received += len(chunk)
                bar.update(len(chunk))
                if record.size is not None and have + received > record.size:
                    raise _Fatal(f"server sent more than the expected {record.size:,} bytes")
                if have + received > limit:
                    f.close()
                    part.unlink()
                    raise _Fatal(
                        f"server sent more than the {limit:,} bytes accepted for {record.id!r} "
                        f"({UNKNOWN_SIZE_FACTOR:g} x its approximate size); the partial file was deleted"
                    )
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                raise DownloadError(f"cannot write {part}: {exc}") from exc
        if length is not None and received < length:
            raise _Transient(f"connection closed after {have + received:,} of {have + length:,} bytes")
        return True


def _download_url(
    url: str, part: Path, record: WeightRecord, options: DownloadOptions, progress: bool
) -> None:
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _fetch_once(url, part, record, options, progress)
            return
        except _Transient as exc:
            after = part.stat().st_size if part.exists() else 0
            failures = 1 if after > before else failures + 1
            if failures > options.retries:
                raise _Fatal(f"{exc}; gave up after {options.retries} retries") from None
            log.warning("%s: %s; retrying", url, exc)
            _sleep_before_retry(options, failures)


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
    part = dest.with_name(dest.name + ".part")
    problems: list[str] = []
    bad_hash = False
    for i, url in enumerate(urls):
        if i > 0 and not record.pinned and part.exists():
            part.unlink()  # never splice bytes from two mirrors when the result cannot be checked
        log.info("downloading %s from %s", record.id, url)
        try:
            _download_url(url, part, record, options, progress)
        except _Fatal as exc:
            problems.append(f"{url}: {exc}")
            continue
        size = part.stat().st_size
        if record.size is not None and size != record.size:
            part.unlink()
            problems.append(
                f"{url}: got {size:,} bytes, expected {record.size:,}; the partial file was deleted"
            )
            bad_hash = True
            continue
        digest = sha256_file(part)
        if not record.hash_matches(digest):
            part.unlink()
            problems.append(
                f"{url}: sha256 {digest} does not match the expected {record.expected_hash_text()}; "
                "the downloaded file was deleted"
            )
            bad_hash = True
            continue
        if not record.pinned:
            try:
                check_content(record, part)
            except WrongFileError as exc:
                part.unlink()
                problems.append(f"{url}: {exc}; the downloaded file was deleted")
                bad_hash = True
                continue
        os.replace(part, dest)
        with contextlib.suppress(OSError):
            dir_fd = os.open(dest.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return digest
    summary = " | ".join(problems)
    if bad_hash:
        raise ChecksumError(f"download of {record.id!r} refused: {summary}")
    raise DownloadError(
        f"could not download {record.id!r} ({summary}); check the network or proxy, then run "
        f"`realface weights fetch {record.id}` again (a partial download is resumed)"
    )
