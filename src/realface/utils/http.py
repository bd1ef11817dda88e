"""One HTTP core for every download: a streamed GET into ``<file>.part``, resumed, retried, bounded.

:func:`download` moves the body of one URL into a part file; its callers add their policy on top:
:mod:`realface.weights.download` (a record's mirrors, its allowed hosts, size and hash) and
:mod:`realface.data.fetch` (a per-host rate limit, the listed sha256). Only the standard library's
``urllib`` is used, so the usual proxy variables (``https_proxy``, ``no_proxy``) apply.

Protocol of one URL:

- an attempt appends to the part file with ``Range: bytes=N-`` when it holds N bytes; a ``206`` for
  another range, or a ``416`` that does not say the part is already whole, deletes the part and starts
  over; a ``200`` answer restarts it;
- connection errors, time-outs, HTTP 408/425/429/5xx and a body cut short are retried with exponential
  back-off (±25 % jitter; a ``Retry-After`` header is honoured up to the ceiling). An attempt that added
  bytes resets the failure count, because the next one resumes where it stopped;
- HTTP 4xx, an unresolvable host name, a refused redirect and a wrong size end the URL at once
  (:class:`TransferError`);
- no more than ``max_bytes`` (or exactly ``size``) bytes are accepted: a larger announced length is
  refused before any byte is stored, and a body that runs past the limit is deleted (:class:`BadSize`).

Verifying the content and renaming the part into place (:func:`promote`) is the caller's work.
"""

from __future__ import annotations

import contextlib
import email.utils
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tqdm.auto import tqdm

__all__ = [
    "MAX_REDIRECTS",
    "RetryPolicy",
    "TransferError",
    "BadSize",
    "PartWriteError",
    "Opener",
    "open_url",
    "user_agent",
    "part_path",
    "download",
    "promote",
]

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
"""Redirects followed for one request; more is refused (a loop, or a chain nobody publishes)."""

_CONTENT_RANGE_RE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_CONTENT_RANGE_416_RE = re.compile(r"^bytes\s+\*/(\d+)$")
_RETRY_CODES = (408, 425, 429)  # and every 5xx

Opener = Callable[[urllib.request.Request, float], Any]
"""Opens a request with a time-out and returns the response (``urllib``'s ``OpenerDirector.open``)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one URL is tried.

    Attributes:
        timeout: seconds to wait for a connection or for the next bytes of a response.
        retries: attempts after a failure that can pass, counted since the last attempt that made progress.
        backoff: first wait in seconds before a retry, doubled per failure, ±25 % jitter.
        max_backoff: ceiling of one wait (also of a ``Retry-After`` the server asks for).
        chunk_size: bytes read per call.
        max_attempts: most attempts in all, progress or not (``None``: no bound beyond ``retries``).
        log_level: level of the line logged before each retry.
    """

    timeout: float = 30.0
    retries: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0
    chunk_size: int = 1 << 16
    max_attempts: int | None = None
    log_level: int = logging.WARNING

    def delay(self, failures: int, after: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failure in a row; ``after``: the server's ``Retry-After``."""
        delay = min(self.max_backoff, self.backoff * 2 ** max(failures - 1, 0)) * (
            0.75 + 0.5 * random.random()
        )
        return delay if after is None else min(self.max_backoff, max(delay, after))


class TransferError(Exception):
    """The URL did not deliver the body and another attempt now would not help; the message names no URL."""


class BadSize(TransferError):
    """The server announced, or sent, more bytes than accepted (or, with an exact ``size``, another count).

    Attributes:
        announced: the length the server announced, or ``None`` when the body itself ran past ``limit``
            (the part file is then deleted).
        limit: the exact size expected (``exact``) or the most bytes accepted.
        exact: whether ``limit`` is the exact size.
    """

    def __init__(self, announced: int | None, limit: int, exact: bool) -> None:
        if announced is None:
            text = f"the body exceeds the limit of {limit:,} bytes; the partial file was deleted"
        elif exact:
            text = f"the server announces {announced:,} bytes, {limit:,} are expected"
        else:
            text = f"the server announces {announced:,} bytes, more than the limit of {limit:,}"
        super().__init__(text)
        self.announced, self.limit, self.exact = announced, limit, exact


class PartWriteError(Exception):
    """The part file could not be written (disk full, permissions); the message names it."""


class _Retry(Exception):
    """Worth another attempt; ``after`` is a server-requested wait in seconds, if any."""

    def __init__(self, message: str, after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to an http(s) URL, on ``hosts`` when given, at most :data:`MAX_REDIRECTS`
    times per request; anything else raises :class:`TransferError`."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, hosts: frozenset[str] | None) -> None:
        super().__init__()
        self.hosts = hosts

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        """urllib's hook: the request that follows the redirect, or :class:`TransferError`."""
        target = urllib.parse.urlparse(urllib.parse.urljoin(req.full_url, newurl))
        if target.scheme not in ("http", "https"):
            raise TransferError(f"refused a redirect to {newurl} (only http and https are followed)")
        host = (target.hostname or "").lower()
        if self.hosts is not None and host not in self.hosts:
            allowed = ", ".join(sorted(self.hosts))
            raise TransferError(f"refused a redirect to host {host!r} (this record allows: {allowed})")
        if len(getattr(req, "redirect_dict", {})) >= MAX_REDIRECTS:
            raise TransferError(f"more than {MAX_REDIRECTS} redirects; gave up at {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def open_url(request: urllib.request.Request, timeout: float, hosts: frozenset[str] | None = None) -> Any:
    """``urlopen`` with the redirect policy of :class:`_Redirects` (proxies from the environment apply)."""
    return urllib.request.build_opener(_Redirects(hosts)).open(request, timeout=timeout)


def user_agent(purpose: str) -> str:
    """``realface/<version> (<purpose>)``, the ``User-Agent`` of every request."""
    from realface import __version__

    return f"realface/{__version__} ({purpose})"


def part_path(dest: Path) -> Path:
    """Where the body of ``dest`` grows until it is complete and verified: ``<dest>.part``."""
    return dest.with_name(dest.name + ".part")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _retry_after(value: str | None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (a number or an HTTP date), or ``None``."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def download(
    url: str,
    part: Path,
    policy: RetryPolicy,
    *,
    purpose: str,
    max_bytes: int,
    size: int | None = None,
    opener: Opener = open_url,
    before_attempt: Callable[[], object] | None = None,
    progress: str | None = None,
) -> None:
    """Move the body of ``url`` into ``part`` (resumed, retried); return when it is complete.

    Args:
        url: an ``http(s)`` URL.
        part: the part file (see :func:`part_path`); bytes already in it are resumed. Its folder must exist.
        policy: time-out, retries and back-off.
        purpose: the ``User-Agent`` comment (see :func:`user_agent`).
        max_bytes: most bytes accepted when ``size`` is unknown.
        size: the exact size expected, or ``None``.
        opener: opens one request (default :func:`open_url`: any host, http(s) redirects only).
        before_attempt: called before every attempt, retries included (a rate limiter's ``wait``).
        progress: description of a tqdm bar, or ``None`` for no bar.

    Raises:
        TransferError: HTTP 4xx, no such host, a refused redirect, a bad size (:class:`BadSize`) or
            retries exhausted; the message says why, without the URL.
        PartWriteError: the part file could not be written.
    """
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise TransferError("only http and https URLs are downloaded")
    limit = size if size is not None else max_bytes
    failures = attempts = 0
    while True:
        attempts += 1
        if policy.max_attempts is not None and attempts > policy.max_attempts:
            raise TransferError(f"still incomplete after {attempts - 1} attempts; giving up")
        before = _size(part)
        if before_attempt is not None:
            before_attempt()
        try:
            _attempt(url, part, policy, purpose, limit, size is not None, opener, progress)
            return
        except _Retry as exc:
            failures = 1 if _size(part) > before else failures + 1
            if failures > policy.retries:
                raise TransferError(f"{exc} (gave up after {policy.retries} retries)") from None
            delay = policy.delay(failures, exc.after)
            log.log(policy.log_level, "%s: %s; retrying in %.1fs", url, exc, delay)
            time.sleep(delay)


def _attempt(
    url: str,
    part: Path,
    policy: RetryPolicy,
    purpose: str,
    limit: int,
    exact: bool,
    opener: Opener,
    progress: str | None,
) -> None:
    """One request, appending to ``part`` (resumed with ``Range``) or restarting it; returns when the body
    is complete, raises :class:`_Retry` or :class:`TransferError` otherwise."""
    have = _size(part)
    if have > limit:
        log.warning("%s holds more than the %s bytes accepted; starting over", part, f"{limit:,}")
        part.unlink()
        have = 0
    if exact and have == limit:
        return  # an earlier attempt finished the body but did not get to verify it
    request = urllib.request.Request(
        url, headers={"User-Agent": user_agent(purpose), "Accept-Encoding": "identity"}
    )
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = opener(request, policy.timeout)
    except urllib.error.HTTPError as exc:
        after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        exc.close()
        if exc.code == 416 and have:
            match = _CONTENT_RANGE_416_RE.match(exc.headers.get("Content-Range", "") or "")
            if match and int(match.group(1)) == have:
                return  # the part file already holds the whole body
            part.unlink()
            raise _Retry(f"HTTP 416 for a resume at byte {have}; starting over") from None
        if exc.code >= 500 or exc.code in _RETRY_CODES:
            raise _Retry(f"HTTP {exc.code} {exc.reason}", after) from None
        raise TransferError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, socket.gaierror):  # the host name does not resolve: no retry helps
            raise TransferError(f"cannot resolve the host ({exc.reason})") from None
        raise _Retry(f"{type(exc).__name__}: {exc.reason}") from None
    except ValueError as exc:  # a malformed URL (port, host)
        raise TransferError(f"invalid URL ({exc})") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Retry(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None

    with response:
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if have and response.status == 206:
            match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", "") or "")
            if not match or int(match.group(1)) != have:
                part.unlink()
                raise _Retry(
                    f"the server answered the resume at byte {have} with another range; starting over"
                )
            mode = "ab"
            total = int(match.group(3)) if match.group(3) != "*" else None
        elif response.status == 200:
            if have:
                log.info("%s: the server does not resume downloads; starting over", url)
            have, mode, total = 0, "wb", length
        else:
            raise _Retry(f"unexpected HTTP status {response.status}")
        if total is None and length is not None:
            total = have + length
        if total is not None and (total > limit or (exact and total != limit)):
            raise BadSize(total, limit, exact)
        received = _write_body(response, part, mode, have, total, limit, exact, policy.chunk_size, progress)
        if length is not None and received < length:
            raise _Retry(f"connection closed after {have + received:,} of {have + length:,} bytes")


def _write_body(
    response: Any,
    part: Path,
    mode: str,
    have: int,
    total: int | None,
    limit: int,
    exact: bool,
    chunk_size: int,
    progress: str | None,
) -> int:
    """Stream the response into ``part`` (fsynced); return the bytes received."""
    received = 0
    bar = tqdm(
        total=total,
        initial=have,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=progress,
        disable=progress is None,
    )
    try:
        f: IO[bytes] = open(part, mode)  # closed below, before a deletion
    except OSError as exc:
        bar.close()
        raise PartWriteError(f"cannot write {part}: {exc}") from None
    with bar, f:
        while True:
            try:
                chunk = response.read(chunk_size)
            except (OSError, http.client.HTTPException) as exc:
                raise _Retry(f"connection lost after {have + received:,} bytes ({exc})") from None
            if not chunk:
                break
            try:
                f.write(chunk)
            except OSError as exc:
                raise PartWriteError(f"cannot write {part}: {exc}") from None
            received += len(chunk)
            bar.update(len(chunk))
            if have + received > limit:
                f.close()
                part.unlink()
                raise BadSize(None, limit, exact)
        try:
            f.flush()
            os.fsync(f.fileno())
        except OSError as exc:
            raise PartWriteError(f"cannot write {part}: {exc}") from None
    return received


def promote(part: Path, dest: Path) -> None:
    """Rename a complete, verified part file to ``dest`` and make the rename durable (folder fsync)."""
    os.replace(part, dest)
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened or synced
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
