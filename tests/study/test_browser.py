"""``realface study serve`` in a real browser: Debian's Chromium driven by Playwright against the page
started here on 127.0.0.1 (the same guards and helpers as the ``realface ui`` browser tests).

Every response the browser receives (but Gradio's heartbeat) passes through a route that keeps its body, so the test can
check that no method name reaches the participant, in the page or in any request's answer. The tests
fail (never skip) when Chromium or Playwright is missing.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import time

import pytest

from realface.study import CreateConfig, Study, create_study
from realface.study.votes import candidate_order
from tests.study._make import METHODS, make_methods
from tests.ui.test_browser import GUARD, TIMEOUT_MS, _click_and_wait, _free_port, _get, browser  # noqa: F401

LETTERS = "ABC"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("study_server")
    folders = make_methods(root / "in", size=(96, 80))
    reference = make_methods(root / "ref", methods=("renders",), size=(96, 80))[0]
    config = CreateConfig(
        name="Catalogue realism", methods=tuple(zip(METHODS, folders, strict=True)), reference=reference,
        crop="full", seed=5,
    )  # fmt: skip
    study = create_study(config, root / "s").study
    guard = root / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    net_log = root / "connections.log"
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(guard), os.environ.get("PYTHONPATH", "")]),
        "REALFACE_TEST_NET_LOG": str(net_log),
        "REALFACE_TEST_GUARD_ON": str(root / "guard-on"),
        "REALFACE_HOME": str(root / "home"),
        "REALFACE_OFFLINE": "1",
    }
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "realface", "study", "serve", str(root / "s"), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(
                f"realface study serve exited with {proc.returncode}:\n{(root / 'server.log').read_text()}"
            )
        try:
            if _get(url + "/") == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"realface study serve did not answer in 120 s:\n{(root / 'server.log').read_text()}")
        time.sleep(0.5)
    assert (root / "guard-on").exists(), "the network guard was not installed in the server process"
    yield {"url": url, "study": study, "port": port, "root": root}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    server_log = (root / "server.log").read_text(errors="replace")
    assert "Traceback" not in server_log, server_log
    assert not net_log.exists(), f"the server tried to reach other hosts: {net_log.read_text()}"


@pytest.fixture
def page(browser, served):  # noqa: F811 - the browser fixture of the ui tests
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    bodies: list[tuple[str, bytes]] = []

    def keep(route):
        response = route.fetch()
        bodies.append((route.request.url, response.body()))
        route.fulfill(response=response)

    # Every response but the heartbeat (an event stream that only ends with the page, and carries no data).
    context.route(lambda url: "/heartbeat/" not in url, keep)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.bodies = bodies
    page.goto(served["url"])
    page.wait_for_selector("#code")
    yield page
    context.unroute_all(behavior="ignoreErrors")
    context.close()
    outside = [u for u, _ in bodies if not u.startswith(served["url"])]
    assert not outside, f"the page requested other hosts: {outside}"


def _fill_code(page, code: str) -> None:
    page.locator("#code").locator("textarea, input").first.fill(code)


def _leaks(text: str) -> list[str]:
    return [m for m in METHODS if m in text]


def _shown_codes(page, study: Study) -> list[str]:
    """The candidate codes behind the images A, B, C, found by the bytes each image is served with."""
    by_hash = {
        hashlib.sha256(study.candidate_path(it, c).read_bytes()).hexdigest(): c
        for it in study.items
        for c in it.candidates
    }
    codes = []
    for letter in LETTERS:
        page.wait_for_selector(f"#candidate-{letter} img")
        src = page.get_attribute(f"#candidate-{letter} img", "src")
        data = page.evaluate(
            "async (u) => Array.from(new Uint8Array(await (await fetch(u)).arrayBuffer()))", src
        )
        codes.append(by_hash[hashlib.sha256(bytes(data)).hexdigest()])
    return codes


def _vote(page, study: Study, letter: str, number: int, total: int) -> str:
    """Pick ``letter`` on item ``number`` and answer yes; returns the code of the picked image."""
    codes = _shown_codes(page, study)
    page.locator("#choice").get_by_label(letter, exact=True).check()
    page.locator("#identity").get_by_label("yes", exact=True).check()
    nxt = f"Item {number + 1} of {total}" if number < total else f"All {total} items done"
    _click_and_wait(page, "#submit", "#progress", nxt)
    return codes[LETTERS.index(letter)]


def test_a_participant_votes_on_every_item_reloads_and_resumes(page, served):
    study: Study = served["study"]
    total = len(study.items)
    assert total == 4
    _fill_code(page, "alice")
    _click_and_wait(page, "#start", "#progress", f"Item 1 of {total}")
    page.wait_for_selector("#reference img")
    picked = [_vote(page, study, "B", 1, total), _vote(page, study, "A", 2, total)]
    assert not _leaks(page.content())
    page.reload()
    page.wait_for_selector("#code")
    assert "Item" not in page.inner_text("#progress")
    _fill_code(page, "alice")
    _click_and_wait(page, "#start", "#progress", f"Item 3 of {total}")  # resumed where alice left
    picked += [_vote(page, study, "C", 3, total), _vote(page, study, "A", 4, total)]
    assert page.locator("#submit").is_hidden()
    assert not _leaks(page.content())

    lines = [json.loads(x) for x in study.votes_path.read_text().splitlines()]
    assert [v["participant"] for v in lines] == ["alice"] * 4
    assert len({v["item"] for v in lines}) == 4  # each item once
    for vote, code in zip(lines, picked, strict=True):
        item = study.item(vote["item"])
        assert vote["code"] == code and vote["method"] == item.candidates[code]  # the image that was shown
        assert vote["shown"] == candidate_order(study, "alice", item) and vote["identity"] == "yes"

    # Starting again shows the end, not a second round.
    page.reload()
    page.wait_for_selector("#code")
    _fill_code(page, "alice")
    _click_and_wait(page, "#start", "#progress", "All 4 items done")
    assert len(study.votes_path.read_text().splitlines()) == 4

    # The recorded bodies hold what the page showed (so a method name there would be caught): the
    # title from the page's config and the progress texts from the event stream of the votes.
    texts = [b.decode("latin-1") for _, b in page.bodies]
    assert any("Catalogue realism" in t for t in texts) and any("Item 3 of 4" in t for t in texts)
    leaked = [(u, _leaks(b.decode("latin-1"))) for u, b in page.bodies if _leaks(b.decode("latin-1"))]
    assert not leaked, f"method names in responses: {leaked}"


def test_a_bad_code_and_a_missing_pick_are_explained(page, served):
    _fill_code(page, "no spaces please")
    _click_and_wait(page, "#start", "#progress", "participant code must be")
    _fill_code(page, "bob")
    _click_and_wait(page, "#start", "#progress", "Item 1 of 4")
    _click_and_wait(page, "#submit", "#progress", "pick the most realistic image first")
    assert not any(
        json.loads(x)["participant"] == "bob" for x in served["study"].votes_path.read_text().splitlines()
    )


def test_a_second_server_on_the_same_study_is_refused(served):
    from tests.robustness._cli import assert_refused, run_realface, snapshot

    folder = served["study"].root
    before = snapshot(folder / "study.json", folder / "items")
    assert_refused(
        run_realface("study", "serve", folder, "--port", str(_free_port())), "study folder", before
    )


def test_foreign_host_names_and_uploads_are_refused(served):
    def request(method: str, path: str, host: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", served["port"], timeout=30)
        try:
            conn.request(method, path, body=b"x" if method == "POST" else None, headers={"Host": host})
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    local = f"127.0.0.1:{served['port']}"
    assert request("GET", "/", local)[0] == 200
    code, body = request("GET", "/", "evil.example")
    assert code == 421 and "Host header" in body
    code, body = request("POST", "/gradio_api/upload", local)
    assert code == 403 and "no uploads" in body
    assert _get(served["url"] + "/gradio_api/file=" + str(served["study"].root / "study.json")) == 403
