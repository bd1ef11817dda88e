"""`realface ui` in a real browser: Debian's Chromium driven by Playwright against the app started here on
127.0.0.1 with tiny generators.

The server runs as its own process (``python -m realface ui``) with a guard that refuses and records
every connection to a non-loopback address, and the browser records every request: both must stay on
this machine. The tests fail (never skip) when Chromium or Playwright is missing; ``.ci/run`` installs
Chromium with apt when needed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import data_file
from tests.test_pipeline import garment_and_background

CHROMIUM = Path(os.environ.get("REALFACE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 120_000

# Installed as sitecustomize in the server process: name lookups and connections may only go to loopback.
GUARD = """
import os, socket
_log = os.environ["REALFACE_TEST_NET_LOG"]
_connect = socket.socket.connect
def _guarded(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = str(address[0])
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            with open(_log, "a") as f:
                f.write(f"{host}:{address[1]}\\n")
            raise OSError(f"test guard: connection to {host} refused")
    return _connect(self, address)
socket.socket.connect = _guarded
_getaddrinfo = socket.getaddrinfo
def _guarded_lookup(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else str(host)
    if not (name.startswith("127.") or name in ("::1", "localhost", "None", "")):
        with open(_log, "a") as f:
            f.write(f"lookup {name}\\n")
        raise socket.gaierror(f"test guard: lookup of {name} refused")
    return _getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = _guarded_lookup
open(os.environ["REALFACE_TEST_GUARD_ON"], "w").close()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("ui_server")
    guard = root / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    net_log = root / "connections.log"
    cat = root / "batchroot" / "catalogue" / "tops"
    cat.mkdir(parents=True)
    (cat / "a.jpg").write_bytes(data_file("images", "replicant_face_00000.jpg").read_bytes())
    (cat / "broken.png").write_bytes(b"not an image")
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(guard), os.environ.get("PYTHONPATH", "")]),
        "REALFACE_TEST_NET_LOG": str(net_log),
        "REALFACE_TEST_GUARD_ON": str(root / "guard-on"),
        "REALFACE_HOME": str(root / "home"),
        "REALFACE_OFFLINE": "1",
    }
    cmd = [
        sys.executable, "-m", "realface", "ui", "--port", str(port), "--workdir", str(root / "work"),
        "--real", str(tiny_models["real"]), "--rendering", str(tiny_models["rendering"]),
        "--lpips-vgg", str(tiny_models["vgg"]), "--device", "cpu", "--batch-root", str(root / "batchroot"),
        "--max-upload-mb", "1", "--max-pixels", "500000",  # the 640x640 test image is within both limits
    ]  # fmt: skip
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"realface ui exited with {proc.returncode}:\n{(root / 'server.log').read_text()}")
        try:
            if _get(url + "/") == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"realface ui did not answer in 120 s:\n{(root / 'server.log').read_text()}")
        time.sleep(0.5)
    assert (root / "guard-on").exists(), "the network guard was not installed in the server process"
    yield {"url": url, "root": root, "work": root / "work", "net_log": net_log}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    server_log = (root / "server.log").read_text(errors="replace")
    assert "Traceback" not in server_log, server_log
    assert not net_log.exists(), f"the server tried to reach other hosts: {net_log.read_text()}"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's chromium (`apt-get install -y chromium`; .ci/run does)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server["url"])
    page.wait_for_selector("#upload")
    yield page
    text = page.inner_text("body")
    context.close()
    assert "Traceback" not in text
    outside = [
        u for u in requests if not u.startswith(server["url"]) and not u.startswith(("data:", "blob:"))
    ]
    assert not outside, f"the page requested other hosts: {outside}"


def _wait_text(page, selector: str, text: str, *, unlike: str | None = None) -> str:
    """Wait until ``selector`` shows ``text`` (and, with ``unlike``, shows something other than that
    earlier text); return the text the browser matched, read in the same check so that a later
    update cannot replace it before it is returned."""
    handle = page.wait_for_function(
        "([s, t, u]) => { const e = document.querySelector(s); "
        "return e && e.innerText.includes(t) && e.innerText !== u ? e.innerText : null; }",
        arg=[selector, text, unlike],
    )
    return handle.json_value()


def _click_and_wait(page, button: str, selector: str, text: str) -> str:
    """Click, then wait until ``selector`` shows ``text``, which the result shown before the click must
    not contain. While a job runs the page keeps the old result (under a timer), and a fast job can
    finish before any intermediate state is painted, so only a text that tells the new result from the
    old one is a safe thing to wait for."""
    before = page.inner_text(selector)
    assert text not in before, f"{text!r} does not tell the new result from the old one: {before!r}"
    page.click(button)
    return _wait_text(page, selector, text)


def _upload(page, *paths) -> None:
    page.set_input_files("#upload input[type=file]", [str(p) for p in paths])


def test_upload_run_see_and_download_the_result(page, tmp_path):
    src = data_file("images", "replicant_face_00000.jpg")
    _upload(page, src)
    status = _wait_text(page, "#status", "face(s) found")
    assert "1 face(s) found in 1 of 1 image(s)" in status
    assert page.locator("#detected img").count() >= 1
    assert page.locator("#faces input[type=checkbox]:checked").count() == 1
    page.fill("#steps input", "4")
    page.get_by_label("PNG (lossless)").check()
    page.click("#run")
    status = _wait_text(page, "#status", "Done")
    assert "1 of 1 image(s), 1 face(s)" in status
    # Before/after: both images shown; per face: input, reconstruction, realistic.
    assert page.locator("#before-after img").count() == 2
    captions = page.inner_text("#face-tiles")
    assert all(k in captions for k in ("face 0 · input", "face 0 · reconstruction", "face 0 · realistic"))
    links = page.locator("#downloads a[download]")
    names = [links.nth(i).get_attribute("download") for i in range(links.count())]
    assert names == [
        "replicant_face_00000_realface.png",
        "replicant_face_00000_realface_face0_latent.safetensors",
        "results.zip",
    ]
    with page.expect_download() as info:
        links.nth(0).click()
    target = tmp_path / "downloaded.png"
    info.value.save_as(target)
    out = np.asarray(Image.open(target).convert("RGB"))
    orig = np.asarray(Image.open(src).convert("RGB"))
    assert out.shape == orig.shape
    keep = garment_and_background(data_file("images", "replicant_face_00000_mask.png"))
    assert np.array_equal(out[keep], orig[keep])  # garment and background pixels unchanged
    assert not np.array_equal(out, orig)  # the face was replaced
    with page.expect_download() as info:
        links.nth(1).click()
    info.value.save_as(tmp_path / "latent.safetensors")
    from realface.pipeline import load_latent

    ws, noise = load_latent(tmp_path / "latent.safetensors")
    assert ws.ndim == 3 and ws.shape[0] == 1 and noise


def test_detection_settings_redetect_and_each_face_shows_its_score(page):
    _upload(page, data_file("images", "replicant_face_00000.jpg"))
    status = _wait_text(page, "#status", "face(s) found")
    assert "1 face(s) found in 1 of 1 image(s)" in status
    label = page.inner_text("#faces")
    assert "face 0 (" in label and "px, score 0." in label  # BlazeFace's probability
    # A threshold no face reaches: detection runs again with it, and the page says why nothing is found.
    page.fill("#threshold textarea", "0.999")
    page.press("#threshold textarea", "Enter")
    status = _wait_text(page, "#status", "threshold 0.999")
    assert "no face" in status and "0 face(s) found" in status
    assert page.locator("#faces input[type=checkbox]").count() == 0
    # dlib's HOG detector with its own default threshold: the face again, with HOG's margin as score.
    page.fill("#threshold textarea", "")
    page.press("#threshold textarea", "Enter")
    page.locator("#detector").get_by_label("hog", exact=True).check()
    status = _wait_text(page, "#status", "1 face(s) found", unlike=status)
    _wait_text(
        page, "#faces", "score 1."
    )  # the HOG margin of this face is above 1 (0.7 to 0.9 for BlazeFace)
    assert page.locator("#faces input[type=checkbox]:checked").count() == 1


def test_bad_uploads_show_readable_messages(page, tmp_path):
    page.click("#run")
    assert "upload an image first" in _wait_text(page, "#status", "Error")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not an image")
    _upload(page, broken)
    status = _wait_text(page, "#status", "not an image")
    assert "Error: broken.jpg: not an image file" in status and str(tmp_path) not in status
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    _upload(page, notes)
    _wait_text(page, "body", "Invalid file type: notes.txt")


def test_upload_limits_bytes_and_pixels(page, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + os.urandom(1_200_000))  # over --max-upload-mb 1
    _upload(page, big)
    _wait_text(page, "body", 'exceed the maximum allowed size of 1.0 Mb: "big.png"')
    wide = tmp_path / "wide.png"
    Image.new("RGB", (1000, 600), (120, 120, 120)).save(wide)  # 600,000 px > --max-pixels 500000
    _upload(page, wide)
    status = _wait_text(page, "#status", "wide.png")
    assert "Error: wide.png: 1000x600 = 600,000 pixels exceeds the limit of 500,000" in status


def test_cancel_stops_a_running_job(page):
    _upload(page, data_file("images", "replicant_face_00000.jpg"))
    _wait_text(page, "#status", "face(s) found")
    page.fill("#steps input", "5000")
    page.click("#run")
    running = _wait_text(page, "#status", "step ")
    assert "/5000" in running and "ETA" in running
    page.click("#cancel")
    try:  # the server's answer, or the job's own status once it has seen the request
        page.wait_for_function(
            "() => /cancelling|Cancelling|Cancelled/.test(document.querySelector('#status').innerText)",
            timeout=20_000,
        )
    except Exception:  # noqa: BLE001 - a click lost under heavy load (seen once in a full run): click again
        page.click("#cancel")
    status = _wait_text(page, "#status", "Cancelled")
    assert "Nothing is running" not in status


def test_batch_tab_runs_a_server_folder_with_the_manifest(page, server):
    page.get_by_role("tab", name="Batch").click()
    page.fill("#steps input", "3")
    page.fill("#batch-in textarea", "catalogue")
    page.fill("#batch-out textarea", "results")
    status = _click_and_wait(page, "#batch-run", "#batch-status", "batch finished")
    assert "failed         1" in status or "failed 1" in " ".join(status.split())
    table = page.inner_text("#batch-table")
    assert "tops/a.jpg" in table and "done" in table and "tops/broken.png" in table
    out = server["root"] / "batchroot" / "results"
    assert (out / "tops" / "a.jpg").is_file() and (out / "manifest.jsonl").is_file()
    # Again: the finished image is skipped.
    status = " ".join(_click_and_wait(page, "#batch-run", "#batch-status", "skipped 1").split())
    assert "batch finished: 2 items" in status and "done 0" in status and "failed 1" in status
    page.fill("#batch-in textarea", "/etc")
    assert "outside the batch folder" in _click_and_wait(page, "#batch-run", "#batch-status", "Error")


def test_models_tab_lists_weights_licences_and_how_to_get_them(page):
    page.get_by_role("tab", name="Models").click()
    table = _wait_text(page, "#weights-table", "sg2ada-ffhq1024")
    assert "NON-COMMERCIAL" in table and "realface weights fetch sg2ada-ffhq1024" in table
    page.locator("#weight-pick input").fill("tv-vgg16")
    page.keyboard.press("Enter")
    page.click("#fetch")
    message = _wait_text(page, "#weights-msg", "Error")
    assert "offline" in message and "realface weights import tv-vgg16" in message


def test_only_the_working_folder_is_served(server, tiny_models):
    base = server["url"] + "/gradio_api/file="
    assert _get(base + "/etc/passwd") == 403
    assert _get(base + str(tiny_models["real"])) == 403
    assert _get(base + str(server["work"]) + "/../server.log") == 403
    probe = server["work"] / "runs" / "probe" / "probe.txt"  # a file inside the app's folder is served
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text("ok")
    assert _get(base + str(probe)) == 200


def test_foreign_host_names_are_refused(server):
    """DNS rebinding: a page bound to 127.0.0.1 answers only requests that name a local host."""
    import http.client

    port = int(server["url"].rsplit(":", 1)[1])

    def status(host: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/", headers={"Host": host})
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
        assert status(host)[0] == 200, host
    for host in (f"evil.example:{port}", "attacker.test", f"127.0.0.1.evil.example:{port}"):
        code, body = status(host)
        assert code == 421 and "Host header" in body and "--host" in body, (host, code, body)
