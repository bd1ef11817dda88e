"""Fixtures for the weights tests: a local HTTP server, a guard that fails any connection that is not to
127.0.0.1, network switched on for one test, and a fresh cache root."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.weights._support import start_server


@pytest.fixture
def file_server():
    state, httpd, thread = start_server()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def connections(monkeypatch):
    """Records every outgoing connection attempt and refuses any that is not to 127.0.0.1 (autouse: no
    test in this folder can reach another host, even through a bug in the code under test)."""
    attempts: list[object] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def guarded_connect(self, address):
        attempts.append(address)
        host = address[0] if isinstance(address, tuple) else address
        if host != "127.0.0.1":
            raise AssertionError(f"test tried to connect to {address!r}")
        return real_connect(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return attempts


@pytest.fixture
def online(monkeypatch, connections):
    """Network allowed (the autouse fixture sets REALFACE_OFFLINE=1), proxies bypassed, connections guarded."""
    for var in ("REALFACE_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return connections


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh cache root, also exported as REALFACE_HOME."""
    root = tmp_path / "cache-root"
    monkeypatch.setenv("REALFACE_HOME", str(root))
    return root
