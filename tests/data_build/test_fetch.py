"""The dataset downloader against a local HTTP server: resume, retries, time-outs, hashes, rate limit."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from realface.data.fetch import FetchConfig, FetchError, HostRateLimiter, fetch_url

FAST = FetchConfig(workers=2, rate_per_host=0, timeout=0.5, retries=1, backoff=0.01, max_backoff=0.05)


def test_fetch_verifies_and_renames(server, tmp_path):
    data = server.files["render.jpg"]
    dest = tmp_path / "a.jpg"
    digest = fetch_url(
        server.url("f", "render.jpg"), dest, sha256=hashlib.sha256(data).hexdigest(), config=FAST
    )
    assert digest == hashlib.sha256(data).hexdigest()
    assert dest.read_bytes() == data
    assert not (tmp_path / "a.jpg.part").exists()


def test_fetch_resumes_a_part_file_with_range(server, tmp_path):
    data = server.files["astronaut.png"]
    dest = tmp_path / "b.png"
    (tmp_path / "b.png.part").write_bytes(data[:1000])
    fetch_url(server.url("f", "astronaut.png"), dest, config=FAST)
    assert dest.read_bytes() == data
    assert server.requests == [("/f/astronaut.png", "bytes=1000-")]


def test_fetch_keeps_a_complete_file_and_rechecks_its_hash(server, tmp_path):
    data = server.files["render.jpg"]
    sha = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "c.jpg"
    dest.write_bytes(data)
    assert fetch_url(server.url("f", "render.jpg"), dest, sha256=sha, config=FAST) == sha
    assert server.requests == []  # nothing fetched again
    dest.write_bytes(b"damaged")  # a wrong file is replaced by a fresh download
    assert fetch_url(server.url("f", "render.jpg"), dest, sha256=sha, config=FAST) == sha
    assert dest.read_bytes() == data and len(server.requests) == 1


def test_fetch_refuses_a_wrong_hash(server, tmp_path):
    dest = tmp_path / "d.jpg"
    with pytest.raises(FetchError, match="does not match the listed"):
        fetch_url(server.url("f", "render.jpg"), dest, sha256="0" * 64, config=FAST)
    assert not dest.exists() and not (tmp_path / "d.jpg.part").exists()


def test_404_fails_at_once_naming_the_url(server, tmp_path):
    url = server.url("f", "nope.jpg")
    with pytest.raises(FetchError, match=r"nope\.jpg: HTTP 404"):
        fetch_url(url, tmp_path / "e.jpg", config=FAST)
    assert server.count("/f/nope.jpg") == 1


def test_503_is_retried(server, tmp_path):
    fetch_url(server.url("flaky", "render.jpg"), tmp_path / "f.jpg", config=FAST)
    assert server.count("/flaky/render.jpg") == 2


def test_slow_server_times_out_after_bounded_retries(server, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(FetchError, match="gave up after 1 retries"):
        fetch_url(server.url("slow", "render.jpg"), tmp_path / "g.jpg", config=FAST)
    assert time.monotonic() - t0 < 3.0
    assert server.count("/slow/render.jpg") == 2


def test_truncated_body_is_reported(server, tmp_path):
    with pytest.raises(FetchError, match="connection closed after|connection lost after"):
        fetch_url(server.url("cut", "render.jpg"), tmp_path / "h.jpg", config=FAST)
    assert not (tmp_path / "h.jpg").exists()


def test_byte_limit(server, tmp_path):
    small = FetchConfig(rate_per_host=0, timeout=0.5, retries=0, max_bytes=1000)
    with pytest.raises(FetchError, match="limit of 1,000"):
        fetch_url(server.url("f", "render.jpg"), tmp_path / "i.jpg", config=small)


def test_rate_limiter_spaces_requests_per_host():
    limiter = HostRateLimiter(rate=20.0)  # one start every 50 ms per host
    starts: dict[str, list[float]] = {"a": [], "b": []}

    def hit(host: str) -> None:
        limiter.wait(host)
        starts[host].append(time.monotonic())

    threads = [threading.Thread(target=hit, args=(h,)) for h in ("a", "b") for _ in range(5)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    for host in ("a", "b"):
        gaps = sorted(starts[host])
        assert len(gaps) == 5
        assert gaps[-1] - gaps[0] >= 4 * 0.05 - 0.01  # five starts need four intervals
    assert time.monotonic() - t0 < 0.6  # the two hosts were served side by side, not one after the other
    assert HostRateLimiter(rate=0).wait("a") == 0.0


class _FakeClock:
    """Stands in for the ``time`` module inside the limiter: sleeping advances the clock exactly."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@pytest.mark.parametrize("rate", [2.0, 3.0, 0.5])
def test_rate_limiter_is_a_true_sliding_window(monkeypatch, rate):
    clock = _FakeClock()
    monkeypatch.setattr("realface.data.fetch.time", clock)
    limiter = HostRateLimiter(rate)
    starts = []
    for _ in range(9):
        limiter.wait("example.org")
        starts.append(clock.now)
        limiter.wait("other.example")  # another host never delays this one
    per_window = max(1, int(rate))
    for i in range(len(starts) - per_window):
        # per_window + 1 consecutive starts never fit in one closed one-second window
        assert starts[i + per_window] - starts[i] > 1.0, starts
    assert all(b - a >= 1 / rate - 1e-9 for a, b in zip(starts, starts[1:], strict=False)), starts


def test_rate_limit_holds_at_the_server_retries_included(server, tmp_path):
    limiter = HostRateLimiter(2.0)
    config = FetchConfig(workers=4, rate_per_host=2.0, timeout=2, retries=2, backoff=0.0, max_backoff=0.0)
    names = ["render.jpg", "astronaut.png", "noface.png"]
    urls = [server.url("flaky", names[0])] + [server.url("f", n) for n in names[1:]]
    threads = [
        threading.Thread(
            target=fetch_url, args=(u, tmp_path / f"{i}.bin"), kwargs=dict(config=config, limiter=limiter)
        )
        for i, u in enumerate(urls)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert len(server.requests) == 4  # three files and one retry (the first answer was 503)
    arrivals = sorted(server.arrivals)
    assert all(later - first > 1.0 for first, later in zip(arrivals, arrivals[2:], strict=False)), arrivals
    assert all((tmp_path / f"{i}.bin").exists() for i in range(3))
