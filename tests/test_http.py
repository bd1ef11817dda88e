"""The HTTP core shared by weight downloads and dataset fetches, against a real server on 127.0.0.1."""

from __future__ import annotations

import socket
import urllib.error

import pytest

from realface.utils import http
from tests.weights._support import payload, start_server

FAST = http.RetryPolicy(timeout=3.0, retries=2, backoff=0.0, max_backoff=0.0, chunk_size=4096)


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    state, httpd, thread = start_server()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _get(url, part, **kw):
    kw.setdefault("max_bytes", 1 << 20)
    return http.download(url, part, kw.pop("policy", FAST), purpose="tests", **kw)


def test_a_whole_part_answered_with_416_is_kept_without_a_size(server, tmp_path):
    data = payload(3000)
    url = server.add("/whole.bin", data)
    part = tmp_path / "whole.bin.part"
    part.write_bytes(data)
    _get(url, part)  # no exact size known: the 416 "bytes */3000" says the part is complete
    assert part.read_bytes() == data
    assert [(r.range, r.status) for r in server.requests_for("/whole.bin")] == [("bytes=3000-", 416)]


def test_an_exactly_sized_complete_part_makes_no_request(server, tmp_path):
    data = payload(2000)
    url = server.add("/done.bin", data)
    part = tmp_path / "done.bin.part"
    part.write_bytes(data)
    _get(url, part, size=len(data))
    assert server.requests_for("/done.bin") == []


def test_progress_resets_the_failure_count_but_attempts_are_bounded(server, tmp_path):
    data = payload(40_000)
    url = server.add("/cut.bin", data, *["truncate"] * 10)  # each answer sends half of what is left
    part = tmp_path / "cut.bin.part"
    policy = http.RetryPolicy(timeout=3.0, retries=1, backoff=0.0, max_backoff=0.0, max_attempts=3)
    with pytest.raises(http.TransferError, match="still incomplete after 3 attempts"):
        _get(url, part, policy=policy)
    assert [r.status for r in server.requests_for("/cut.bin")] == [200, 206, 206]
    assert part.read_bytes() == data[: part.stat().st_size]  # what arrived is kept for the next run
    # Without the bound, the same one retry suffices: every attempt made progress.
    _get(url, part, policy=http.RetryPolicy(timeout=3.0, retries=1, backoff=0.0, max_backoff=0.0))
    assert part.read_bytes() == data


def test_redirects_go_to_any_http_host_but_never_to_another_scheme(server, tmp_path):
    data = payload(1000)
    server.add("/real.bin", data)
    server.redirects["/elsewhere"] = f"http://localhost:{server.port}/real.bin"
    _get(server.url("/elsewhere"), tmp_path / "a.part")  # no host list: any http(s) host
    assert (tmp_path / "a.part").read_bytes() == data
    server.redirects["/ftp"] = "ftp://127.0.0.1/real.bin"
    with pytest.raises(http.TransferError, match="only http and https are followed"):
        _get(server.url("/ftp"), tmp_path / "b.part")
    assert len(server.requests_for("/ftp")) == 1  # refused, not retried
    assert not (tmp_path / "b.part").exists()


def test_only_http_urls_are_opened(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for download")
    with pytest.raises(http.TransferError, match="only http and https"):
        _get(secret.as_uri(), tmp_path / "x.part")
    assert not (tmp_path / "x.part").exists()


def test_size_limits_refuse_announced_and_endless_bodies(server, tmp_path):
    url = server.add("/big.bin", payload(5000))
    with pytest.raises(http.BadSize) as info:
        _get(url, tmp_path / "big.part", max_bytes=4000)
    assert (info.value.announced, info.value.limit, info.value.exact) == (5000, 4000, False)
    assert "more than the limit of 4,000" in str(info.value)
    assert not (tmp_path / "big.part").exists()  # refused before any byte was stored
    with pytest.raises(http.BadSize) as info:
        _get(url, tmp_path / "big.part", size=6000, max_bytes=10_000)
    assert (info.value.announced, info.value.limit, info.value.exact) == (5000, 6000, True)

    server.endless.add("/endless")
    with pytest.raises(http.BadSize) as info:
        _get(server.url("/endless"), tmp_path / "endless.part", max_bytes=100_000)
    assert info.value.announced is None and "the partial file was deleted" in str(info.value)
    assert not (tmp_path / "endless.part").exists()


def test_an_unknown_host_is_not_retried(tmp_path):
    calls = []

    def no_dns(request, timeout):
        calls.append(request.full_url)
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    with pytest.raises(http.TransferError, match="cannot resolve the host"):
        _get("http://nowhere.invalid/a.bin", tmp_path / "a.part", opener=no_dns)
    assert calls == ["http://nowhere.invalid/a.bin"]


def test_5xx_is_retried_with_the_rate_hook_before_every_attempt(server, tmp_path):
    data = payload(1000)
    url = server.add("/r.bin", data, "500", "500")
    hooks = []
    _get(url, tmp_path / "r.part", before_attempt=lambda: hooks.append(len(server.requests_for("/r.bin"))))
    assert hooks == [0, 1, 2]  # called before each request, retries included
    assert [r.status for r in server.requests_for("/r.bin")] == [500, 500, 200]
    with pytest.raises(http.TransferError, match=r"HTTP 500 .*\(gave up after 2 retries\)"):
        _get(server.add("/down.bin", data, *["500"] * 5), tmp_path / "d.part")
    assert len(server.requests_for("/down.bin")) == FAST.retries + 1


def test_backoff_doubles_with_jitter_and_honours_retry_after_up_to_the_ceiling():
    policy = http.RetryPolicy(backoff=1.0, max_backoff=10.0)
    for failures, base in ((1, 1.0), (2, 2.0), (3, 4.0), (9, 10.0)):
        assert all(0.75 * base <= policy.delay(failures) <= 1.25 * base for _ in range(20))
    assert policy.delay(1, after=7.0) == 7.0
    assert policy.delay(1, after=120.0) == 10.0
    assert http._retry_after("3") == 3.0
    assert http._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert http._retry_after("soon") is None and http._retry_after(None) is None
