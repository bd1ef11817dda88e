"""`realface apply` and `realface invert` refuse bad batches as a user meets them: one `error:` line,
exit status 1, nothing written, inputs untouched; and a refused second batch leaves the running one's
files alone."""

from __future__ import annotations

import filelock
import pytest
from PIL import Image

from realface.batch import LOCK_NAME, MANIFEST_NAME
from tests.conftest import data_file
from tests.robustness._cli import assert_refused, run_realface, snapshot


@pytest.fixture
def models(apply_models):
    return apply_models


def _apply_args(models) -> list[object]:
    return ["--real", models["real"], "--rendering", models["rendering"], "--lpips-vgg", models["vgg"]]


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data_file("images", "replicant_face_00000.jpg").read_bytes())
    return path


def test_output_folder_that_is_the_input_image_is_refused(tmp_path):
    img = _image(tmp_path / "a.jpg")
    before = snapshot(img)
    run = run_realface("apply", img, "-o", img, "--no-progress")
    assert_refused(run, "a.jpg", inputs=before)
    assert "input image, not a folder" in run.error_lines[0]


def test_batch_without_inputs_is_refused_and_names_the_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    run = run_realface("apply", empty, "-o", tmp_path / "out", "--no-progress")
    assert_refused(run, str(empty), outputs=[tmp_path / "out"])
    assert "no input images found" in run.error_lines[0]

    same = tmp_path / "same"
    _image(same / "look.jpg")
    before = snapshot(same)
    run = run_realface("apply", same, "-o", same, "--no-progress")
    assert_refused(run, str(same), inputs=before, outputs=[same / MANIFEST_NAME])
    assert "is the output folder" in run.error_lines[0] and "0 items" not in run.stdout


@pytest.mark.parametrize("value", ["gif", "/tmp/some/folder/x.png"])
def test_unknown_output_format_is_refused(tmp_path, value):
    img = _image(tmp_path / "in" / "a.jpg")
    run = run_realface("apply", img.parent, "-o", tmp_path / "out", "--format", value, "--no-progress")
    assert_refused(run, "--format", inputs=snapshot(img), outputs=[tmp_path / "out"])
    assert "png, jpg, webp" in run.error_lines[0]


def test_colliding_outputs_are_refused_before_any_work(tmp_path):
    src = tmp_path / "in"
    _image(src / "x.jpg")
    Image.open(src / "x.jpg").save(src / "x.png")
    before = snapshot(src)
    run = run_realface("apply", src, "-o", tmp_path / "out", "--format", "png", "--no-progress")
    assert_refused(run, "x.jpg and x.png both write x.png", inputs=before, outputs=[tmp_path / "out"])

    Image.open(src / "x.jpg").save(src / "x_face0_sheet.png")
    (src / "x.png").unlink()
    before = snapshot(src)
    run = run_realface("apply", src, "-o", tmp_path / "out", "--sheet", "--no-progress")
    assert_refused(run, "x_face0_sheet.png", inputs=before, outputs=[tmp_path / "out"])
    assert "x_face<N>_* of x.jpg" in run.error_lines[0]


def test_refused_second_batch_writes_nothing_into_the_running_ones_folder(tmp_path, models):
    src, out = tmp_path / "in", tmp_path / "out"
    _image(src / "look.jpg")
    out.mkdir()
    (out / "config.json").write_text('{"the running batch": "its config"}\n')
    (out / MANIFEST_NAME).write_text("")
    with filelock.FileLock(str(out / LOCK_NAME)).acquire(timeout=0):  # the running batch holds it
        before = snapshot(out, src)
        run = run_realface("apply", src, "-o", out, *_apply_args(models), "--steps", "1", "--no-progress")
        assert_refused(run, str(out), inputs=before)
        assert "another batch is already writing" in run.error_lines[0]
        assert sorted(p.name for p in out.iterdir()) == sorted([".batch.lock", "config.json", MANIFEST_NAME])


def test_transfer_layers_out_of_range_are_refused_before_any_image_work(tmp_path, models):
    img = _image(tmp_path / "in" / "a.jpg")
    run = run_realface(
        "apply", img.parent, "-o", tmp_path / "out", *_apply_args(models), "--steps", "100000",
        "--transfer-layers", "0-20", "--no-progress",
    )  # fmt: skip
    assert_refused(run, "--transfer-layers", inputs=snapshot(img), outputs=[tmp_path / "out"])
    assert "has 10 W+ layers" in run.error_lines[0]


def test_invert_refuses_a_photo_that_is_not_aligned(tmp_path, models):
    photo = tmp_path / "photo.png"
    Image.open(data_file("images", "replicant_face_00000.jpg")).convert("RGB").resize((640, 640)).save(photo)
    before = snapshot(photo)
    run = run_realface(
        "invert", photo, "--network", models["rendering"], "-o", tmp_path / "inv", "--lpips-vgg",
        models["vgg"], "--steps", "1", "--no-progress",
    )  # fmt: skip
    assert_refused(run, "photo.png", inputs=before, outputs=[tmp_path / "inv"])
    assert "640x640" in run.error_lines[0] and "realface align" in run.error_lines[0]
