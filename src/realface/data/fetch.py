"""Downloading the images of a URL list: per-host rate limit, retries with backoff, resume, hash check.

Why not :mod:`realface.weights.download`: that code is built around a :class:`WeightRecord` (its id
names progress bars and error messages, its messages point at ``realface weights fetch``, it drops
web-page hosts, it has no byte ceiling) and it retries without asking anyone's permission. Images
from a user's list need the opposite defaults: many small files from a few hosts, each request
(retries included) paced by a per-host rate limit, a ceiling on the bytes one URL may send, and
errors that name the URL. What is shared is reused: the SHA-256 helper and the offline switch
(:mod:`realface.weights.cache`), the standard library's ``urllib`` (so ``https_proxy``/``no_proxy``
apply) and the same ``.part`` + ``Range`` resume protocol.

A download goes to ``<dest>.part`` and is renamed to ``dest`` only when the body is complete and,
when a SHA-256 is given, matches it; a file already at ``dest`` is kept (and re-verified when a hash
is given), so a rerun fetches only what is missing.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import email.utils
import http.client
import logging
import math
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from realface.errors import RealFaceError
from realface.weights.cache import sha256_file

__all__ = ["FetchConfig", "FetchError", "HostRateLimiter", "fetch_url"]

logger = logging.getLogger(__name__)

_CONTENT_RANGE_RE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)


@dataclasses.dataclass(frozen=True)
class FetchConfig:
    """Network behaviour of dataset downloads.

    Attributes:
        workers: downloads running at once (threads). Default 8.
        rate_per_host: most requests started in any one-second window towards one host name,
            retries included (``0`` for no limit; see :class:`HostRateLimiter`). Default 2: polite
            towards image hosts and CDNs, and 8 workers still keep several hosts busy.
        timeout: seconds to wait for a connection or for the next bytes of a response. Default 30.
        retries: further attempts after a failure that can pass (connection errors, time-outs,
            HTTP 408/425/429/5xx, a body cut short). Default 3. HTTP 4xx fails at once.
        backoff: first wait before a retry in seconds, doubled per failure, ±25 % jitter; a
            ``Retry-After`` header is honoured up to ``max_backoff``. Default 1.
        max_backoff: ceiling of one wait. Default 30.
        max_bytes: largest file accepted from one URL. Default 64 MiB (a 100-megapixel PNG is
            rarely larger; the pixel limit applies again when the image is decoded).
    """

    workers: int = 8
    rate_per_host: float = 2.0
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0
    max_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1; got {self.workers}")
        if self.rate_per_host < 0 or self.timeout <= 0 or self.retries < 0 or self.backoff < 0:
            raise ValueError(f"invalid FetchConfig: {self}")
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive; got {self.max_bytes}")


class FetchError(RealFaceError):
    """A URL could not be downloaded; the message names the URL and why."""


class HostRateLimiter:
    """Paces request starts per host name: a true sliding window of one second.

    For ``rate`` r, no window of one second (open or closed) holds more than ``max(1, floor(r))``
    starts towards one host, and starts are also spaced at least ``1 / r`` apart. The window is
    enforced with a margin of :attr:`MARGIN` seconds, so that network jitter cannot make the
    server see one start too many in a second. Every attempt (retries included) must call
    :meth:`wait` first. Thread-safe: each caller reserves its slot under a lock and sleeps
    outside it, so requests to different hosts never wait for each other.
    """

    WINDOW = 1.0
    MARGIN = 0.05

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.per_window = max(1, math.floor(rate)) if rate > 0 else 0
        self._starts: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def wait(self, host: str) -> float:
        """Block until a request to ``host`` may start; returns the seconds waited."""
        if self.interval <= 0:
            return 0.0
        with self._lock:
            now = time.monotonic()
            starts = self._starts.setdefault(host, collections.deque(maxlen=self.per_window))
            slot = now
            if starts:
                slot = max(slot, starts[-1] + self.interval)
            if len(starts) == self.per_window:  # the oldest start of the last `per_window` ones
                slot = max(slot, starts[0] + self.WINDOW + self.MARGIN)
            starts.append(slot)
        delay = slot - now
        if delay > 0:
            time.sleep(delay)
        return delay


class _Retry(Exception):
    """Worth another attempt; ``after`` is a server-requested wait in seconds, if any."""

    def __init__(self, message: str, after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) URLs only."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 (urllib's signature)
        if urlparse(newurl).scheme not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"refused redirect to {newurl}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects())


def _user_agent() -> str:
    from realface import __version__

    return f"realface/{__version__} (dataset build)"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def _attempt(url: str, part: Path, config: FetchConfig) -> None:
    """One request, appending to ``part`` (resumed with ``Range``) or restarting it.

    Returns when the body is complete; raises :class:`_Retry` or :class:`FetchError`.
    """
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(
        url, headers={"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    )
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = _OPENER.open(request, timeout=config.timeout)
    except urllib.error.HTTPError as exc:
        after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        exc.close()
        if exc.code == 416 and have:
            part.unlink()
            raise _Retry(f"HTTP 416 for a resume at byte {have}; starting over") from None
        if exc.code in _RETRY_STATUSES:
            raise _Retry(f"HTTP {exc.code} {exc.reason}", after) from None
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise _Retry(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None

    with response:
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if have and response.status == 206:
            match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", "") or "")
            if not match or int(match.group(1)) != have:
                part.unlink()
                raise _Retry(f"the server answered the resume at byte {have} with another range")
            mode = "ab"
        elif response.status == 200:
            have, mode = 0, "wb"
        else:
            raise _Retry(f"unexpected HTTP status {response.status}")
        if length is not None and have + length > config.max_bytes:
            raise FetchError(f"{url}: {have + length:,} bytes is more than the limit of {config.max_bytes:,}")
        received = 0
        with open(part, mode) as f:
            while True:
                try:
                    chunk = response.read(1 << 16)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Retry(f"connection lost after {have + received:,} bytes ({exc})") from None
                if not chunk:
                    break
                f.write(chunk)
                received += len(chunk)
                if have + received > config.max_bytes:
                    part.unlink()
                    raise FetchError(f"{url}: the body exceeds the limit of {config.max_bytes:,} bytes")
        if length is not None and received < length:
            raise _Retry(f"connection closed after {have + received:,} of {have + length:,} bytes")


def _check_hash(path: Path, sha256: str | None, url: str) -> str:
    digest = sha256_file(path)
    if sha256 is not None and digest != sha256:
        path.unlink()
        raise FetchError(f"{url}: sha256 {digest} does not match the listed {sha256}; the file was deleted")
    return digest


def fetch_url(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    config: FetchConfig | None = None,
    limiter: HostRateLimiter | None = None,
) -> str:
    """Download ``url`` to ``dest`` (resumable) and return the file's SHA-256.

    A complete file already at ``dest`` is reused, after a hash check when ``sha256`` is given (a
    mismatch deletes it and downloads again). Otherwise the body streams into ``<dest>.part``,
    resumed with an HTTP ``Range`` request when an earlier attempt left bytes there, and is renamed
    to ``dest`` once complete and verified.

    Args:
        url: an ``http(s)`` URL.
        dest: where the file goes; its folder must exist.
        sha256: expected SHA-256 (lower-case hex), or ``None`` to accept any content.
        config: :class:`FetchConfig`.
        limiter: shared :class:`HostRateLimiter`; every request (retries too) waits for it.

    Raises:
        FetchError: HTTP 4xx, retries exhausted, too large, or a hash mismatch; names the URL.
    """
    config = config or FetchConfig()
    limiter = limiter or HostRateLimiter(config.rate_per_host)
    if dest.exists():
        with contextlib.suppress(FetchError):
            return _check_hash(dest, sha256, url)
        logger.warning("%s: the file fetched earlier does not match its sha256; downloading again", url)
    host = (urlparse(url).hostname or "").lower()
    part = dest.with_name(dest.name + ".part")
    failures = attempts = 0
    while True:
        attempts += 1
        if attempts > 4 * (config.retries + 1):  # progress resets the failure count; this bounds the loop
            raise FetchError(f"{url}: still incomplete after {attempts - 1} attempts; giving up")
        before = part.stat().st_size if part.exists() else 0
        limiter.wait(host)
        try:
            _attempt(url, part, config)
            break
        except _Retry as exc:
            after = part.stat().st_size if part.exists() else 0
            failures = 1 if after > before else failures + 1
            if failures > config.retries:
                raise FetchError(f"{url}: {exc} (gave up after {config.retries} retries)") from None
            delay = min(config.max_backoff, config.backoff * 2 ** (failures - 1)) * (
                0.75 + 0.5 * random.random()
            )
            if exc.after is not None:
                delay = min(config.max_backoff, max(delay, exc.after))
            logger.debug("%s: %s; retrying in %.1fs", url, exc, delay)
            time.sleep(delay)
        except OSError as exc:  # writing the part file
            raise FetchError(f"{url}: cannot write {part} ({exc.strerror or exc})") from None
    digest = _check_hash(part, sha256, url)
    os.replace(part, dest)
    return digest
