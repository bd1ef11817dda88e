"""Hostile training archives and URL lists, run through the CLI as a user would."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from tests.conftest import data_file
from tests.robustness._cli import assert_refused, run_realface, snapshot


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 90, 70)).save(buf, "PNG")
    return buf.getvalue()


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


ZIPS = {
    "traversal": lambda p: _zip(p, {"../../escape.png": _png()}),
    "absolute": lambda p: _zip(p, {"/tmp/abs.png": _png()}),
    "not-images": lambda p: _zip(p, {"a.png": b"not a png", "b.jpg": b"\xff\xd8 broken"}),
    "truncated": lambda p: (_zip(p, {"a.png": _png()}), p.write_bytes(p.read_bytes()[:60])),
    "empty-file": lambda p: p.write_bytes(b""),
}


@pytest.mark.parametrize("case", sorted(ZIPS))
def test_train_refuses_a_hostile_archive(case, tmp_path):
    archive = tmp_path / f"{case}.zip"
    ZIPS[case](archive)
    before = snapshot(archive)
    run_dir = tmp_path / "run"
    run = run_realface(
        "train", "--data", archive, "--real", data_file("stylegan2-ada", "sg2ada_tiny64.pkl"),
        "--out", run_dir, "--kimg", "0.004", "--batch", "4", "--workers", "0", "--no-progress",
    )  # fmt: skip
    assert_refused(run, archive.name, before, outputs=[run_dir])


URL_LISTS = {
    "bad.json": ('{"urls": [', "not valid JSON"),
    "file.txt": ("file:///etc/passwd\n", "not an http(s) URL"),
    "ftp.csv": ("url,license\nftp://example.org/a.jpg,cc0\n", "not an http(s) URL"),
    "empty.txt": ("", "no URL"),
}


@pytest.mark.parametrize("name", sorted(URL_LISTS))
def test_dataset_build_refuses_a_bad_url_list(name, tmp_path):
    text, problem = URL_LISTS[name]
    urls = tmp_path / name
    urls.write_text(text)
    before = snapshot(urls)
    out = tmp_path / "faces.zip"
    run = run_realface("dataset", "build", "--urls", urls, "-o", out, "--size", "256", "--no-progress")
    assert_refused(run, name, before, outputs=[out, tmp_path / "faces.zip.build"])
    assert problem in run.error_lines[0]
