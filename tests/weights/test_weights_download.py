"""Downloads against a real HTTP server on 127.0.0.1: success, refusal, resume, retries, offline, locking."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import realface
from realface.weights import (
    ChecksumError,
    DownloadError,
    ManualDownloadRequired,
    MissingWeightsError,
    verify_weight,
    weight_path,
)
from realface.weights.cache import anchor_path, cached_file_path, clear_hash_memo
from tests.weights._support import FAST, make_record, payload, sha256


def _get(record, **kw):
    return weight_path(record, progress=False, options=FAST, **kw)


def _rewrite(path: Path, data: bytes) -> None:
    """Replace the content and move the mtime clearly forward (file-system clocks are coarse)."""
    mtime = path.stat().st_mtime_ns
    path.write_bytes(data)
    os.utime(path, ns=(mtime + 2_000_000_000, mtime + 2_000_000_000))


def test_download_success_then_cache_hit(file_server, online, home):
    data = payload(50_000)
    record = make_record(file_server.add("/m.bin", data), data)

    path = _get(record)

    assert path == home / "weights" / "test-file" / "model.bin"
    assert path.read_bytes() == data
    assert anchor_path(path).read_text().split() == [sha256(data), "model.bin"]
    assert not path.with_name("model.bin.part").exists()
    assert len(file_server.requests_for("/m.bin")) == 1
    # Second use: verified from the cache, no request.
    assert _get(record) == path
    assert len(file_server.requests_for("/m.bin")) == 1
    assert all(addr[0] == "127.0.0.1" for addr in online)


def test_first_download_logs_licence_and_flags_non_commercial(file_server, online, home, caplog):
    data = payload(1000)
    record = make_record(file_server.add("/nc.bin", data), data, license="Research only", non_commercial=True)
    with caplog.at_level(logging.INFO, logger="realface.weights"):
        _get(record)
    lines = [r.getMessage() for r in caplog.records if "licence:" in r.getMessage()]
    assert lines and "Research only [NON-COMMERCIAL]" in lines[0]
    assert any(r.levelno == logging.WARNING for r in caplog.records if "licence:" in r.getMessage())


def test_hash_mismatch_is_refused_and_part_removed(file_server, online, home):
    data = payload(30_000)
    served = bytearray(data)
    served[100] ^= 0xFF  # same size, one byte different
    record = make_record(file_server.add("/bad.bin", bytes(served)), data)

    with pytest.raises(ChecksumError) as info:
        _get(record)

    dest = cached_file_path(record, home)
    assert not dest.exists()
    assert not dest.with_name(dest.name + ".part").exists()
    message = str(info.value)
    assert sha256(data) in message and sha256(bytes(served)) in message
    assert file_server.url("/bad.bin") in message


def test_announced_size_mismatch_is_refused_without_keeping_bytes(file_server, online, home):
    data = payload(10_000)
    record = make_record(file_server.add("/short.bin", data[:5000]), data)
    with pytest.raises(DownloadError, match="server announces 5,000 bytes, the registry expects 10,000"):
        _get(record)
    dest = cached_file_path(record, home)
    assert not dest.exists()
    assert not dest.with_name(dest.name + ".part").exists()


def test_truncated_response_is_resumed_with_range(file_server, online, home):
    data = payload(40_000)
    record = make_record(file_server.add("/t.bin", data, "truncate"), data)

    path = _get(record)

    assert path.read_bytes() == data
    reqs = file_server.requests_for("/t.bin")
    assert [r.status for r in reqs] == [200, 206]
    assert reqs[0].range is None
    assert reqs[1].range == f"bytes={len(data) // 2}-"
    assert reqs[0].bytes_sent + reqs[1].bytes_sent == len(data)  # nothing fetched twice


def test_existing_part_file_is_resumed(file_server, online, home):
    data = payload(20_000)
    record = make_record(file_server.add("/p.bin", data), data)
    dest = cached_file_path(record, home)
    dest.parent.mkdir(parents=True)
    dest.with_name(dest.name + ".part").write_bytes(data[:12_345])

    assert _get(record).read_bytes() == data
    (req,) = file_server.requests_for("/p.bin")
    assert (req.range, req.status, req.bytes_sent) == ("bytes=12345-", 206, len(data) - 12_345)


def test_server_ignoring_range_restarts_instead_of_appending(file_server, online, home):
    data = payload(20_000)
    record = make_record(file_server.add("/nr.bin", data, "no-range"), data)
    dest = cached_file_path(record, home)
    dest.parent.mkdir(parents=True)
    dest.with_name(dest.name + ".part").write_bytes(data[:7000])

    assert _get(record).read_bytes() == data
    (req,) = file_server.requests_for("/nr.bin")
    assert req.status == 200 and req.bytes_sent == len(data)


def test_http_500_is_retried_then_succeeds(file_server, online, home):
    data = payload(5000)
    record = make_record(file_server.add("/r.bin", data, "500", "500"), data)
    assert _get(record).read_bytes() == data
    assert [r.status for r in file_server.requests_for("/r.bin")] == [500, 500, 200]


def test_retries_are_bounded_and_the_error_names_the_url(file_server, online, home):
    data = payload(5000)
    url = file_server.add("/down.bin", data, *(["500"] * 10))
    record = make_record(url, data)
    with pytest.raises(DownloadError) as info:
        _get(record)
    assert url in str(info.value) and "HTTP 500" in str(info.value)
    assert len(file_server.requests_for("/down.bin")) == FAST.retries + 1
    assert not cached_file_path(record, home).exists()


def test_404_falls_back_to_the_next_mirror(file_server, online, home):
    data = payload(5000)
    missing = file_server.add("/gone.bin", data, "404")
    mirror = file_server.add("/mirror.bin", data)
    record = make_record((missing, mirror), data)
    assert _get(record).read_bytes() == data
    assert [r.status for r in file_server.requests_for("/gone.bin")] == [404]  # 4xx: not retried
    assert len(file_server.requests_for("/mirror.bin")) == 1


@pytest.mark.parametrize("variable", ["REALFACE_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_mode_makes_no_connection_and_says_what_to_do(
    file_server, online, home, monkeypatch, variable
):
    monkeypatch.setenv(variable, "1")
    data = payload(5000)
    url = file_server.add("/off.bin", data)
    record = make_record(url, data, id="offline-test")

    with pytest.raises(MissingWeightsError) as info:
        _get(record)

    assert online == []  # no socket was even opened
    assert file_server.requests_for("/off.bin") == []
    message = str(info.value)
    dest = cached_file_path(record, home)
    for needle in ("offline-test", url, "5,000 bytes", sha256(data), str(dest), variable):
        assert needle in message
    assert "realface weights import offline-test PATH" in message
    assert "\n" not in message


def test_download_false_never_connects(file_server, online, home):
    data = payload(100)
    record = make_record(file_server.add("/nd.bin", data), data)
    with pytest.raises(MissingWeightsError, match="downloads are disabled"):
        _get(record, download=False)
    assert online == []


def test_manual_only_record_names_the_page_and_the_destination(file_server, online, home):
    record = make_record(
        "https://drive.google.com/open?id=abc",
        None,
        id="manual-test",
        manual_only=True,
        manual_hint="extract model.bin from the zip",
    )
    with pytest.raises(ManualDownloadRequired) as info:
        _get(record)
    message = str(info.value)
    assert "https://drive.google.com/open?id=abc" in message
    assert "extract model.bin from the zip" in message
    assert str(cached_file_path(record, home)) in message
    assert online == []


def test_corrupt_cached_file_is_deleted_and_fetched_again(file_server, online, home):
    data = payload(8000)
    record = make_record(file_server.add("/c.bin", data), data)
    path = _get(record)
    _rewrite(path, b"\0" * len(data))  # same size, new mtime: detected by the memo check

    assert _get(record).read_bytes() == data
    assert len(file_server.requests_for("/c.bin")) == 2


def test_silent_corruption_found_by_verify_is_fetched_again(file_server, online, home):
    data = payload(8000)
    record = make_record(file_server.add("/s.bin", data), data)
    path = _get(record)
    st = path.stat()
    path.write_bytes(b"\1" * len(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: bit rot the memo cannot see

    result = verify_weight(record)
    assert result.ok is False and "sha256" in result.problem
    assert _get(record).read_bytes() == data
    assert len(file_server.requests_for("/s.bin")) == 2


def test_in_place_corruption_with_size_and_mtime_kept_is_caught_by_the_next_process(
    file_server, online, home
):
    data = payload(8000)
    record = make_record(file_server.add("/p.bin", data), data)
    path = _get(record)
    st = path.stat()
    with open(path, "r+b") as f:  # same inode, same size
        f.seek(4000)
        f.write(b"\xff" * 16)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_ino == st.st_ino and path.stat().st_mtime_ns == st.st_mtime_ns
    clear_hash_memo()  # what a new process starts with: every file is hashed on its first use
    assert _get(record).read_bytes() == data
    assert len(file_server.requests_for("/p.bin")) == 2
    assert not (home / "hashes").exists()  # nothing memoised on disk


def test_unpinned_file_is_recorded_loudly_and_checked_later(file_server, online, home, monkeypatch, caplog):
    data = payload(6000)
    record = make_record(file_server.add("/u.bin", data), data, pinned=False)
    with caplog.at_level(logging.WARNING, logger="realface.weights"):
        path = _get(record)
    assert any(
        "NO PUBLISHED SHA256" in r.getMessage() and sha256(data) in r.getMessage() for r in caplog.records
    )
    assert anchor_path(path).read_text().split()[0] == sha256(data)

    _rewrite(path, payload(6000, seed=1))  # someone replaced the file
    monkeypatch.setenv("REALFACE_OFFLINE", "1")
    with pytest.raises(MissingWeightsError):  # the changed file is refused (and removed), not used
        _get(record)
    assert not path.exists()


def test_hash_prefix_only_record_is_checked(file_server, online, home):
    data = payload(3000)
    good = make_record(file_server.add("/g.bin", data), data, pinned=False, sha256_prefix=sha256(data)[:8])
    assert _get(good).read_bytes() == data
    bad = make_record(
        file_server.add("/b.bin", data), data, id="bad-prefix", pinned=False, sha256_prefix="00000000"
    )
    with pytest.raises(ChecksumError, match="starting 00000000"):
        _get(bad)


_CHILD = """
import json, os, sys, time
from pathlib import Path
from realface.weights import DownloadOptions, WeightRecord, weight_path
spec = json.loads(sys.argv[1])
spec["urls"] = tuple(spec["urls"])
record = WeightRecord(**spec)
sync = Path(sys.argv[2])
(sync / f"ready-{os.getpid()}").touch()
deadline = time.monotonic() + 20
while not (sync / "go").exists():
    if time.monotonic() > deadline:
        sys.exit("never got the go signal")
    time.sleep(0.005)
options = DownloadOptions(timeout=5.0, retries=2, backoff=0.01)
print(weight_path(record, progress=False, options=options))
"""


def test_two_processes_download_once_and_both_succeed(file_server, online, home, tmp_path):
    data = payload(96_000)
    record = make_record(file_server.add("/shared.bin", data, "slow", "slow"), data, id="shared")
    spec = dataclasses.asdict(record)
    sync = tmp_path / "sync"
    sync.mkdir()
    src_dir = str(Path(realface.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([src_dir, env.get("PYTHONPATH", "")])

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps(spec), str(sync)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    deadline = time.monotonic() + 30
    while len(list(sync.glob("ready-*"))) < 2:  # both are imported and about to call weight_path
        assert time.monotonic() < deadline, "child processes did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    (sync / "go").touch()
    outputs = [p.communicate(timeout=30) for p in procs]

    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    dest = cached_file_path(record, home)
    assert [out.strip() for out, _ in outputs] == [str(dest), str(dest)]
    assert dest.read_bytes() == data
    reqs = file_server.requests_for("/shared.bin")
    assert len(reqs) == 1 and reqs[0].status == 200 and reqs[0].bytes_sent == len(data)


def test_unresolvable_host_fails_at_once_with_the_manual_route(online, home, monkeypatch):
    """No DNS (offline machine, blocked network): no retries, and the error says where to put the file."""
    import socket
    import urllib.error
    import urllib.request

    calls = []

    def no_dns(request, timeout=None, hosts=None):
        calls.append(request.full_url)
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr("realface.weights.download._open", no_dns)
    data = payload(100)
    record = make_record(
        ("http://weights.example.invalid/a.bin", "http://mirror.example.invalid/a.bin"), data
    )
    with pytest.raises(DownloadError) as info:
        _get(record)
    assert calls == list(record.download_urls)  # one attempt per URL, no retries
    msg = str(info.value)
    assert "cannot resolve the host" in msg and f"realface weights import {record.id}" in msg
    assert str(cached_file_path(record, home)) in msg


# --- redirects and byte ceilings --------------------------------------------------------------------


def test_redirects_are_followed_only_over_http_to_allowed_hosts_and_counted(file_server, online, home):
    data = payload(4000)
    file_server.add("/real.bin", data)
    port = file_server.port
    # Same host: followed.
    file_server.redirects["/r-ok"] = "/real.bin"
    assert _get(make_record(file_server.url("/r-ok"), data, id="r-ok")).read_bytes() == data

    def refused(record, *words):
        with pytest.raises(DownloadError) as info:
            _get(record)
        message = str(info.value)
        assert all(w in message for w in words), message
        dest = cached_file_path(record, home)
        assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()
        return message

    # ftp:// (urllib would follow it): refused, and no retry of a refused redirect.
    file_server.redirects["/r-ftp"] = "ftp://127.0.0.1/real.bin"
    refused(make_record(file_server.url("/r-ftp"), data, id="r-ftp"), "ftp://127.0.0.1/real.bin", "only http")
    assert len(file_server.requests_for("/r-ftp")) == 1
    # Another host (localhost resolves to the same server): refused unless the record allows it.
    file_server.redirects["/r-host"] = f"http://localhost:{port}/real.bin"
    refused(make_record(file_server.url("/r-host"), data, id="r-host"), "'localhost'", "127.0.0.1")
    allowed = make_record(file_server.url("/r-host"), data, id="r-host2", redirect_hosts=("localhost",))
    assert _get(allowed).read_bytes() == data
    # A chain longer than the cap (here: a loop through six distinct paths) is refused.
    for i in range(7):
        file_server.redirects[f"/loop{i}"] = f"/loop{(i + 1) % 7}"
    refused(make_record(file_server.url("/loop0"), data, id="r-loop"), "more than 5 redirects")
    assert len(file_server.requests_for("/loop0")) == 1


def test_a_record_without_a_size_gets_at_most_twice_its_approximate_size(file_server, online, home):
    from realface.weights.download import byte_limit

    record = make_record(file_server.url("/endless"), None, id="endless", pinned=False, approx_size=10_000)
    file_server.endless.add("/endless")
    assert byte_limit(record) == 20_000
    with pytest.raises(DownloadError) as info:
        _get(record)
    assert "more than the 20,000 bytes accepted for 'endless'" in str(info.value)
    dest = cached_file_path(record, home)
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()
    assert len(file_server.requests_for("/endless")) == 1  # refused, not retried

    # An announced length over the ceiling is refused before any byte is stored.
    big = make_record(
        file_server.add("/big.bin", payload(30_000)), None, id="big", pinned=False, approx_size=10_000
    )
    with pytest.raises(DownloadError) as info:
        _get(big)
    assert "server announces 30,000 bytes, more than the 20,000 accepted" in str(info.value)
    # Within the factor: accepted.
    ok = make_record(
        file_server.add("/ok.bin", payload(15_000)), None, id="ok", pinned=False, approx_size=10_000
    )
    assert _get(ok).stat().st_size == 15_000
