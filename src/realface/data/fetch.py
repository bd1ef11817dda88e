"""Downloading the images of a URL list: a per-host rate limit on top of :mod:`realface.utils.http`.

The HTTP core (shared with :mod:`realface.weights.download`) does the transfer: ``<dest>.part``
resumed with ``Range``, retries with backoff, time-outs, a byte ceiling. This module adds what images
from a user's list need: every request (retries included) paced by a per-host rate limit
(:class:`HostRateLimiter`), the listed sha256, and errors that name the URL.

A download goes to ``<dest>.part`` and is renamed to ``dest`` only when the body is complete and,
when a SHA-256 is given, matches it; a file already at ``dest`` is kept (and re-verified when a hash
is given), so a rerun fetches only what is missing.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from realface.errors import RealFaceError
from realface.utils import http
from realface.weights.cache import sha256_file

__all__ = ["FetchConfig", "FetchError", "HostRateLimiter", "fetch_url"]

logger = logging.getLogger(__name__)


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
            HTTP 408/425/429/5xx, a body cut short). Default 3. HTTP 4xx and an unknown host fail
            at once.
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

    def policy(self) -> http.RetryPolicy:
        """The HTTP core's policy: retries logged at debug level (a build reports its failures itself),
        and at most ``4 * (retries + 1)`` attempts in all (progress resets the failure count)."""
        return http.RetryPolicy(
            self.timeout,
            self.retries,
            self.backoff,
            self.max_backoff,
            max_attempts=4 * (self.retries + 1),
            log_level=logging.DEBUG,
        )


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
    pace = limiter or HostRateLimiter(config.rate_per_host)
    if dest.exists():
        with contextlib.suppress(FetchError):
            return _check_hash(dest, sha256, url)
        logger.warning("%s: the file fetched earlier does not match its sha256; downloading again", url)
    host = (urlparse(url).hostname or "").lower()
    part = http.part_path(dest)
    try:
        http.download(
            url,
            part,
            config.policy(),
            purpose="dataset build",
            max_bytes=config.max_bytes,
            before_attempt=lambda: pace.wait(host),
        )
    except http.TransferError as exc:
        raise FetchError(f"{url}: {exc}") from None
    except OSError as exc:  # writing the part file
        raise FetchError(f"{url}: cannot write {part} ({exc.strerror or exc})") from None
    digest = _check_hash(part, sha256, url)
    http.promote(part, dest)
    return digest
