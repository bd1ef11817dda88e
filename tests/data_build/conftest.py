"""An HTTP server on 127.0.0.1 (random port, threaded) serving fixture images for the dataset tests.

Routes (all GET):
    /f/<name>       a file from the served folder; honours ``Range: bytes=N-`` with 206
    /slow/<name>    the same file, but only after ``SLOW_SECONDS`` (longer than the tests' timeout)
    /cut/<name>     announces the file's full length, sends a third of it, closes the connection
    /flaky/<name>   HTTP 503 on the first request, the file afterwards
    /cutonce/<name> the first request is answered like /cut/, later ones like /f/ (Range honoured)
    anything else   HTTP 404

``server.requests`` logs ``(path, range header)`` of every request; ``server.files`` maps names to
bytes and may be changed by a test (e.g. to make a missing file appear).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from tests.conftest import data_file

SLOW_SECONDS = 1.5


@dataclass
class Served:
    """The running server: its base URL, its files and its request log."""

    base: str
    files: dict[str, bytes]
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each request, in order
    flaky_seen: set[str] = field(default_factory=set)

    def url(self, route: str, name: str) -> str:
        return f"{self.base}/{route}/{name}"

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


def _handler(served: Served, lock: threading.Lock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            rng = self.headers.get("Range")
            with lock:
                served.requests.append((self.path, rng))
                served.arrivals.append(time.monotonic())
            parts = self.path.strip("/").split("/", 1)
            route, name = (parts[0], parts[1]) if len(parts) == 2 else ("", "")
            data = served.files.get(name)
            if route == "cutonce":
                with lock:
                    route = "f" if name in served.flaky_seen else "cut"
                    served.flaky_seen.add(name)
            if data is None or route not in ("f", "slow", "cut", "flaky"):
                self._send(404, b"not found")
                return
            if route == "slow":
                time.sleep(SLOW_SECONDS)
            if route == "flaky":
                with lock:
                    first = name not in served.flaky_seen
                    served.flaky_seen.add(name)
                if first:
                    self._send(503, b"try later")
                    return
            if route == "cut":
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data[: len(data) // 3])
                self.wfile.flush()
                self.close_connection = True
                return
            if rng and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[len("bytes=") : -1])
                self._send(
                    206,
                    data[start:],
                    {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"},
                )
                return
            self._send(200, data)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address) -> None:  # a client that gave up is expected
        pass


@pytest.fixture
def server(fixture_files: dict[str, bytes], monkeypatch) -> Iterator[Served]:
    """A fresh server per test on 127.0.0.1:<random port>; proxies are switched off for it."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    served = Served(base="", files=dict(fixture_files))
    httpd = _QuietServer(("127.0.0.1", 0), _handler(served, threading.Lock()))
    served.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def fixture_files() -> dict[str, bytes]:
    """The served images: two real fixtures and variants made from them.

    astronaut.png    a photo (two faces found by HOG)
    render.jpg       a rendered person (tests/data/images/replicant_face_00000.jpg)
    render_blur.png  the render blurred (σ = 3 px): rejected by the blur filter
    render_copy.jpg  the render re-encoded at JPEG quality 85: rejected as a duplicate
    noface.png       smooth colour gradient, 160 px: no face
    corrupt.jpg      a JPEG header followed by garbage: cannot be decoded
    """
    astronaut = data_file("images", "astronaut.png").read_bytes()
    render = data_file("images", "replicant_face_00000.jpg").read_bytes()
    rgb = np.asarray(Image.open(io.BytesIO(render)).convert("RGB"))
    blurred = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(3)))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=85)
    y, x = np.mgrid[0:160, 0:160]
    gradient = np.stack([x * 1.5, y * 1.5, (x + y) * 0.7], axis=-1).astype(np.uint8)
    corrupt = render[:200] + bytes(np.random.RandomState(0).randint(0, 256, 3000, dtype=np.uint8))
    return {
        "astronaut.png": astronaut,
        "render.jpg": render,
        "render_blur.png": _png(blurred),
        "render_copy.jpg": buf.getvalue(),
        "noface.png": _png(gradient),
        "corrupt.jpg": corrupt,
    }


def write_images(folder: Path, files: dict[str, bytes], names: list[str]) -> Path:
    """Write some of the fixture files into ``folder`` (for --images builds)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(files[name])
    return folder
