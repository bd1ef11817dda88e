"""``realface align`` and ``realface paste`` on broken or hostile inputs, as a user runs them: images too
small for the detector, unsupported modes, a decompression bomb, reruns into the same folder, and a
missing weight. Each refusal is one ``error:`` line naming the file, exit status 1, no output, inputs
unchanged; a rerun replaces only what ``align`` wrote before."""

from __future__ import annotations

import json
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import data_file
from tests.robustness._cli import assert_refused, run_realface, snapshot


def _bomb_png(path, width=30000, height=30000):
    """A 100-byte PNG whose header declares ``width`` × ``height`` RGB pixels (one row of data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * width), 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("size", [(1, 1), (8, 8)])
def test_align_refuses_an_image_too_small_for_the_detector(tmp_path, size):
    src = tmp_path / "tiny.png"
    Image.new("RGB", size, (90, 60, 30)).save(src)
    before = snapshot(src)
    out = tmp_path / "out"
    # upsample 0 and no size floor: the settings under which dlib's CNN detector fails on small images
    run = run_realface("align", src, "-o", out, "--upsample", "0", "--min-face-size", "0")
    assert_refused(run, "tiny.png", before, outputs=[out / "tiny_face0.png", out / "tiny_face0.json"])
    assert "no face of at least 16 px found" in run.error_lines[0]


def test_align_refuses_integer_float_and_tiff_16bit_modes_naming_the_mode(tmp_path):
    files = {
        "int32.tif": (np.full((96, 96), 70000, np.int32), "mode I (32-bit integer)"),
        "gray16.tif": (np.full((96, 96), 3000, np.uint16), "mode I;16"),
        "float.tif": (np.full((96, 96), 0.5, np.float32), "mode F (32-bit float)"),
    }
    for name, (pixels, mode) in files.items():
        src = tmp_path / name
        Image.fromarray(pixels).save(src)
        before = snapshot(src)
        run = run_realface("align", src, "-o", tmp_path / "out")
        assert_refused(run, name, before, outputs=[tmp_path / "out"])
        assert f"{mode}" in run.error_lines[0] and "not supported" in run.error_lines[0], run.stderr


def test_align_refuses_a_decompression_bomb_in_one_line(tmp_path):
    bomb = _bomb_png(tmp_path / "bomb.png")
    before = snapshot(bomb)
    for extra in ((), ("--max-pixels", "250000000")):
        run = run_realface("align", bomb, "-o", tmp_path / "out", *extra)
        assert_refused(run, "bomb.png", before, outputs=[tmp_path / "out"])
        assert "more pixels than the limit" in run.error_lines[0]
    run = run_realface("align", bomb, "-o", tmp_path / "out", "--max-pixels", "1000000000000")
    assert_refused(run, "--max-pixels", before, outputs=[tmp_path / "out"])
    assert "250,000,000" in run.error_lines[0]


def test_align_reports_several_bad_inputs_in_one_error_line(tmp_path):
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    before = snapshot(tiny, notes)
    run = run_realface("align", tiny, notes, "-o", tmp_path / "out")
    assert_refused(run, "2 of 2 images failed", before, outputs=[tmp_path / "out"])
    assert "tiny.png" in run.error_lines[0] and "notes.png" in run.error_lines[0]
    assert "notes.png: not an image file" in run.stderr  # each reason is logged above the error line


def test_align_rerun_replaces_its_own_outputs_and_nothing_else(tmp_path):
    src = tmp_path / "photo.jpg"
    shutil.copy(data_file("images", "replicant_face_00000.jpg"), src)
    out = tmp_path / "al"
    crop, meta = out / "photo_face0.png", out / "photo_face0.json"
    first = run_realface("align", src, "-o", out, "--size", "256")
    assert first.returncode == 0, first.stderr
    assert Image.open(crop).size == (256, 256)

    again = run_realface("align", src, "-o", out, "--size", "512")  # the same folder, new settings
    assert again.returncode == 0 and not again.error_lines, again.stderr
    assert Image.open(crop).size == (512, 512)
    assert json.loads(meta.read_text())["face"]["alignment"]["output_size"] == 512
    assert sorted(p.name for p in out.iterdir()) == ["photo_face0.json", "photo_face0.png"]

    # A file of the same name that align did not write (no matching JSON beside it) is kept.
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(other / "photo_face0.png")
    before = snapshot(src, other)
    run = run_realface("align", src, "-o", other, "--size", "256")
    assert_refused(run, "photo_face0.png", before, outputs=[other / "photo_face0.json"])
    assert "not an earlier output of `realface align`" in run.error_lines[0]

    # JSON for another image's face does not make the crop ours either.
    d = json.loads(meta.read_text())
    d["image"] = "someone_else.jpg"
    (other / "photo_face0.json").write_text(json.dumps(d))
    before = snapshot(src, other)
    assert_refused(run_realface("align", src, "-o", other), "photo_face0.png", before)


def test_align_never_overwrites_an_input_even_one_it_wrote(tmp_path):
    src = tmp_path / "photo.jpg"
    shutil.copy(data_file("images", "replicant_face_00000.jpg"), src)
    out = tmp_path / "al"
    assert run_realface("align", src, "-o", out, "--size", "256").returncode == 0
    crop = out / "photo_face0.png"
    before = snapshot(src, crop, crop.with_suffix(".json"))
    # photo.jpg's crop would land on photo_face0.png, which this run also reads as an input.
    run = run_realface("align", src, crop, "-o", out, "--size", "256", "--no-cnn")
    assert run.returncode == 1 and len(run.error_lines) == 1, run.stderr
    assert "refusing to overwrite the input image" in run.error_lines[0] and str(crop) in run.error_lines[0]
    assert snapshot(src, crop, crop.with_suffix(".json")) == before


def test_paste_with_missing_parsing_weights_says_how_to_get_them(tmp_path):
    src = data_file("images", "replicant_face_00000.jpg")
    out = tmp_path / "al"
    assert run_realface("align", src, "-o", out, "--size", "256").returncode == 0
    crop, meta = out / "replicant_face_00000_face0.png", out / "replicant_face_00000_face0.json"
    before = snapshot(out)
    result = tmp_path / "pasted.png"
    args = ("paste", "--image", src, "--face", crop, "--meta", meta, "-o", result, "--mask", "parsing")
    run = run_realface(*args)
    assert_refused(run, "bisenet-79999", before, outputs=[result])
    line = run.error_lines[0]
    assert "realface weights fetch bisenet-79999" in line and "realface weights import bisenet-79999" in line
