"""Support for the weights tests: a real threaded HTTP server on 127.0.0.1 (random port) that serves small
files and can misbehave on demand, and helpers to build records for it."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from realface.weights import DownloadOptions, WeightRecord

# Short enough that a hung request cannot stall the suite.
FAST = DownloadOptions(timeout=3.0, retries=3, backoff=0.01, max_backoff=0.05, chunk_size=4096)

_RANGE_RE = re.compile(r"^bytes=(\d+)-$")


@dataclass
class Request:
    path: str
    range: str | None
    status: int
    bytes_sent: int


@dataclass
class FileServer:
    """Serves ``files`` (path -> bytes). ``plan[path]`` is a queue of behaviours for successive requests:
    ``ok``, ``500``, ``404``, ``truncate`` (full Content-Length, half the body, then close),
    ``no-range`` (ignore Range, send 200 and the whole file), ``slow`` (small chunks with pauses)."""

    files: dict[str, bytes] = field(default_factory=dict)
    plan: dict[str, deque[str]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location of a 302 answer
    endless: set[str] = field(default_factory=set)  # paths streamed without Content-Length, unbounded
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, data: bytes, *plan: str) -> str:
        self.files[path] = data
        self.plan[path] = deque(plan)
        return self.url(path)

    def requests_for(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def next_behaviour(self, path: str) -> str:
        with self.lock:
            queue = self.plan.get(path)
            return queue.popleft() if queue else "ok"

    def log(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)


def _make_handler(server: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format, *args):  # noqa: A002 - silence the default stderr logging
            pass

        def do_GET(self):  # noqa: N802 - name fixed by BaseHTTPRequestHandler
            range_header = self.headers.get("Range")
            if self.path in server.redirects:
                server.log(Request(self.path, range_header, 302, 0))
                self.send_response(302)
                self.send_header("Location", server.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path in server.endless:  # no length announced; stops only when the client hangs up
                server.log(Request(self.path, range_header, 200, 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                chunk = b"\0" * 65536
                try:
                    for _ in range(2048):  # 128 MiB at most, so that a broken client cannot hang the suite
                        self.wfile.write(chunk)
                except OSError:
                    pass
                return
            data = server.files.get(self.path)
            behaviour = server.next_behaviour(self.path)
            # Each request is logged before any byte of the answer leaves, so that a client's retry can
            # never be logged ahead of the request it retries.
            if data is None or behaviour in ("404", "500"):
                code = 404 if data is None else int(behaviour)
                server.log(Request(self.path, range_header, code, 0))
                self.send_error(code)
                return
            start = 0
            match = _RANGE_RE.match(range_header or "")
            if match and behaviour != "no-range":
                start = int(match.group(1))
                if start >= len(data):
                    server.log(Request(self.path, range_header, 416, 0))
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
            status = 206 if start else 200
            body = data[start:]
            sent = body[: len(body) // 2] if behaviour == "truncate" else body
            server.log(Request(self.path, range_header, status, len(sent)))
            self.send_response(status)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))  # the full length, even when truncating
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if behaviour == "slow":
                for i in range(0, len(sent), 2048):
                    self.wfile.write(sent[i : i + 2048])
                    self.wfile.flush()
                    time.sleep(0.01)
            else:
                self.wfile.write(sent)
                self.wfile.flush()

    return Handler


def payload(n: int = 50_000, seed: int = 0) -> bytes:
    """Deterministic, non-repeating test bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_record(
    url: str | tuple[str, ...],
    data: bytes | None,
    *,
    id: str = "test-file",
    filename: str = "model.bin",
    pinned: bool = True,
    **kw,
) -> WeightRecord:
    """A record for ``data`` served at ``url`` (``pinned=False``: no sha256 and no size published)."""
    urls = (url,) if isinstance(url, str) else url
    fields = dict(
        id=id,
        filename=filename,
        urls=urls,
        sha256=sha256(data) if (pinned and data is not None) else None,
        size=len(data) if (pinned and data is not None) else None,
        license="test licence",
        non_commercial=False,
        format="raw",
        source="tests",
        used_for="tests",
    )
    fields.update(kw)
    return WeightRecord(**fields)


def start_server() -> tuple[FileServer, http.server.ThreadingHTTPServer, threading.Thread]:
    state = FileServer()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return state, httpd, thread
