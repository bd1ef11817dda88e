"""One HTTP core for every download: a streamed GET into ``<file>.part``, resumed, retried, bounded.

:func:`download` moves the body of one URL into a part file; the callers add their policy on top
(:mod:`realface.weights.download`: mirrors, allowed hosts, size and hash; :mod:`realface.data.fetch`:
a per-host rate limit, the listed sha256) and verify and :func:`promote` the part themselves. Only
``urllib`` is used, so the proxy variables (``https_proxy``, ``no_proxy``) apply. Bytes already in the
part are resumed with ``Range`` (a ``200`` answer restarts, a wrong ``206`` range deletes the part);
connection errors, time-outs, HTTP 408/425/429/5xx and a body cut short are retried with back-off (an
attempt that added bytes resets the count); HTTP 4xx, an unknown host, a refused redirect and a wrong
size end the URL at once. A length over the limit is refused before any byte is stored, a body that
runs past it is deleted.
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
from functools import partial
from pathlib import Path
from typing import IO, Any

from tqdm.auto import tqdm

__all__ = [
    "MAX_REDIRECTS",
    "RetryPolicy",
    "TransferError",
    "BadSize",
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
_bytes_bar = partial(tqdm, unit="B", unit_scale=True, unit_divisor=1024)

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
        """Seconds to wait after the ``failures``-th failure in a row; ``after``: a ``Retry-After``."""
        delay = min(self.max_backoff, self.backoff * 2 ** max(failures - 1, 0)) * (
            0.75 + 0.5 * random.random()
        )
        return delay if after is None else min(self.max_backoff, max(delay, after))


class TransferError(Exception):
    """The URL did not deliver the body and another attempt now would not help; the message names no URL."""


class BadSize(TransferError):
    """The server announced (``announced``), or sent (``announced`` is ``None``; the part is then deleted),
    more bytes than the ``limit`` accepted, or with ``exact`` another count than that exact size."""

    def __init__(self, announced: int | None, limit: int, exact: bool) -> None:
        if announced is None:
            text = f"the body exceeds the limit of {limit:,} bytes; the partial file was deleted"
        elif exact:
            text = f"the server announces {announced:,} bytes, {limit:,} are expected"
        else:
            text = f"the server announces {announced:,} bytes, more than the limit of {limit:,}"
        super().__init__(text)
        self.announced, self.limit, self.exact = announced, limit, exact


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
            raise TransferError(f"refused a redirect to host {host!r} (allowed: {allowed})")
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
    if value and value.strip().isdigit():
        return float(value.strip())
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value or "").timestamp() - time.time())
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
        OSError: the part file could not be written (disk full, permissions).
    """
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise TransferError("only http and https URLs are downloaded")
    limit = size if size is not None else max_bytes
    job = _Transfer(url, part, policy, user_agent(purpose), limit, size is not None, opener, progress)
    failures = attempts = 0
    while True:
        attempts += 1
        if policy.max_attempts is not None and attempts > policy.max_attempts:
            raise TransferError(f"still incomplete after {attempts - 1} attempts; giving up")
        before = _size(part)
        if before_attempt is not None:
            before_attempt()
        try:
            return job.attempt()
        except _Retry as exc:
            failures = 1 if _size(part) > before else failures + 1
            if failures > policy.retries:
                raise TransferError(f"{exc} (gave up after {policy.retries} retries)") from None
            delay = policy.delay(failures, exc.after)
            log.log(policy.log_level, "%s: %s; retrying in %.1fs", url, exc, delay)
            time.sleep(delay)


@dataclass(frozen=True)
class _Transfer:
    """One URL into one part file; ``limit``: the exact size when ``exact``, else the most bytes accepted."""

    url: str
    part: Path
    policy: RetryPolicy
    agent: str
    limit: int
    exact: bool
    opener: Opener
    progress: str | None

    def attempt(self) -> None:
        """One request, appending to the part (resumed with ``Range``) or restarting it; returns when the
        body is complete, raises :class:`_Retry` or :class:`TransferError` otherwise."""
        have = _size(self.part)
        if have > self.limit:
            log.warning(
                "%s holds more than the %s bytes accepted; starting over", self.part, f"{self.limit:,}"
            )
            self.part.unlink()
            have = 0
        if self.exact and have == self.limit:
            return  # an earlier attempt finished the body but did not get to verify it
        request = urllib.request.Request(
            self.url, headers={"User-Agent": self.agent, "Accept-Encoding": "identity"}
        )
        if have:
            request.add_header("Range", f"bytes={have}-")
        with self._open(request, have) as response:
            if response is None:
                return  # HTTP 416 for a resume at the very end: the part file holds the whole body
            length_header = response.headers.get("Content-Length")
            length = int(length_header) if length_header and length_header.isdigit() else None
            total = have + length if length is not None else None
            if have and response.status == 206:
                match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", "") or "")
                if not match or int(match.group(1)) != have:
                    self.part.unlink()
                    raise _Retry(
                        f"the server answered the resume at byte {have} with another range; starting over"
                    )
                mode, total = "ab", int(match.group(3)) if match.group(3) != "*" else total
            elif response.status == 200:
                if have:
                    log.info("%s: the server does not resume downloads; starting over", self.url)
                have, mode, total = 0, "wb", length
            else:
                raise _Retry(f"unexpected HTTP status {response.status}")
            if total is not None and (total > self.limit or (self.exact and total != self.limit)):
                raise BadSize(total, self.limit, self.exact)
            received = self._write_body(response, mode, have, total)
        if length is not None and received < length:
            raise _Retry(f"connection closed after {have + received:,} of {have + length:,} bytes")

    def _open(self, request: urllib.request.Request, have: int) -> Any:
        """The response, or ``contextlib.nullcontext()`` when a 416 says the part is already complete."""
        try:
            return self.opener(request, self.policy.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            headers: Any = exc.headers or {}
            if exc.code == 416 and have:
                match = _CONTENT_RANGE_416_RE.match(headers.get("Content-Range", "") or "")
                if match and int(match.group(1)) == have:
                    return contextlib.nullcontext()
                self.part.unlink()
                raise _Retry(f"HTTP 416 for a resume at byte {have}; starting over") from None
            if exc.code >= 500 or exc.code in _RETRY_CODES:
                raise _Retry(
                    f"HTTP {exc.code} {exc.reason}", _retry_after(headers.get("Retry-After"))
                ) from None
            raise TransferError(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, socket.gaierror):  # the host name does not resolve: no retry helps
                raise TransferError(f"cannot resolve the host ({exc.reason})") from None
            raise _Retry(f"URLError: {exc.reason}") from None
        except ValueError as exc:  # a malformed URL (port, host)
            raise TransferError(f"invalid URL ({exc})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from None

    def _write_body(self, response: Any, mode: str, have: int, total: int | None) -> int:
        """Stream the response into the part file (then fsync it); return the bytes received."""
        received = 0
        bar = _bytes_bar(total=total, initial=have, desc=self.progress, disable=self.progress is None)
        with bar, open(self.part, mode) as f:
            while have + received <= self.limit:
                try:
                    chunk = response.read(self.policy.chunk_size)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Retry(f"connection lost after {have + received:,} bytes ({exc})") from None
                if not chunk:
                    break
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        if have + received > self.limit:
            self.part.unlink()
            raise BadSize(None, self.limit, self.exact)
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
