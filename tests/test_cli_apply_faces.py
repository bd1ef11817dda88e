"""`realface apply` with the detection options of `align` and with `--faces FACES.json` (tiny generators)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from realface.face.given import FACES_FORMAT
from tests.conftest import data_file
from tests.robustness._cli import assert_refused, run_realface, snapshot
from tests.test_cli_apply import models, run_cli  # noqa: F401  (the fixture)


def _box() -> list[int]:
    return json.loads(data_file("align", "replicant_face_00000_landmarks.json").read_text())["face_box"]


def test_dry_run_records_the_detection_options(tmp_path, capsys):
    args = ["apply", tmp_path, "-o", tmp_path / "o", "--dry-run"]
    assert run_cli(*args) == 0
    detect = json.loads(capsys.readouterr().out)["config"]
    assert detect["detect"]["detector"] == "blazeface" and detect["detect"]["threshold"] is None
    assert detect["detect"]["min_face_size"] == 48 and detect["faces"] is None
    faces = tmp_path / "look.faces.json"
    faces.write_text("{}")
    extra = [
        "--detector",
        "hog",
        "--threshold",
        "0.3",
        "--min-face",
        "30",
        "--faces",
        faces,
        "--face-index",
        "1",
    ]
    assert run_cli(*args, *extra) == 0
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert cfg["detect"]["detector"] == "hog" and cfg["detect"]["threshold"] == 0.3
    assert cfg["detect"]["min_face_size"] == 30 and cfg["faces"] == str(faces) and cfg["face_index"] == 1


def test_apply_processes_exactly_the_given_faces(tmp_path, models):  # noqa: F811
    src = tmp_path / "in" / "look.png"
    src.parent.mkdir()
    Image.open(data_file("images", "replicant_face_00000.jpg")).save(src)
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "look.faces.json").write_text(
        json.dumps({"format": FACES_FORMAT, "image": "look.png", "faces": [{"box_ltrb": _box()}]})
    )
    out = tmp_path / "out"
    base = ["apply", src.parent, "-o", out, *models, "--steps", "1", "--no-progress", "--mask", "landmarks"]
    assert run_cli(*base, "--faces", faces, "--save-latents") == 0
    result = np.asarray(Image.open(out / "look.png"))
    assert (
        result.shape == np.asarray(Image.open(src)).shape
        and (out / "look_face0_latent.safetensors").is_file()
    )
    assert not (out / "look_face1_latent.safetensors").exists()
    # A threshold no detection reaches: without --faces the image has no face; with it, the face is given.
    assert run_cli(*base[:3], tmp_path / "out2", *base[4:], "--threshold", "0.999") == 1
    assert run_cli(*base[:3], tmp_path / "out3", *base[4:], "--threshold", "0.999", "--faces", faces) == 0


def test_apply_refuses_missing_or_mismatched_faces_files(tmp_path, models):  # noqa: F811
    src = tmp_path / "look.png"
    Image.open(data_file("images", "replicant_face_00000.jpg")).save(src)
    before = snapshot(src)
    run = run_realface("apply", src, "-o", tmp_path / "o", *models, "--faces", tmp_path / "nothing.json")
    assert_refused(run, "nothing.json", before, outputs=[tmp_path / "o"])
    other = tmp_path / "other.faces.json"
    other.write_text(
        json.dumps({"format": FACES_FORMAT, "image": "other.png", "faces": [{"box_ltrb": _box()}]})
    )
    run = run_realface("apply", src, "-o", tmp_path / "o", *models, "--steps", "1", "--faces", other)
    assert run.returncode == 1 and "made for the image 'other.png', not 'look.png'" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "o" / "look.png").exists()
