"""`realface apply` on a JPEG, as a user runs it: the JPEG output keeps the garment and background
pixels, and libjpeg's own messages about damaged data never reach the terminal."""

from __future__ import annotations

import numpy as np
from PIL import Image

from realface.checkpoints import convert_pickle
from tests._helpers import random_vgg16_file
from tests.conftest import data_file
from tests.robustness._cli import run_realface, snapshot
from tests.test_pipeline import garment_and_background


def test_apply_writes_a_jpeg_whose_garment_pixels_are_unchanged(tmp_path):
    pkl = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    real = convert_pickle(pkl, tmp_path / "real.safetensors", only=("G",))
    rendering = convert_pickle(pkl, tmp_path / "rendering.safetensors", only=("G_ema",))
    vgg = random_vgg16_file(tmp_path / "vgg16.pth")
    data = data_file("images", "replicant_face_00000.jpg").read_bytes()
    # A stray restart marker in the scan: Pillow decodes the file, libjpeg prints "Corrupt JPEG data".
    src = tmp_path / "in" / "avatar.jpg"
    src.parent.mkdir()
    cut = len(data) * 9 // 10  # in the last rows (the jacket), away from the face
    src.write_bytes(data[:cut] + b"\xff\xd3" + data[cut:])
    before = snapshot(src.parent)
    run = run_realface(
        "apply", src, "-o", tmp_path / "out", "--real", real, "--rendering", rendering,
        "--lpips-vgg", vgg, "--steps", "1", "--mask", "landmarks", "--no-progress",
        env={"REALFACE_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "Corrupt JPEG" not in run.stderr + run.stdout
    assert not run.error_lines and "re-encoded" in run.stderr
    assert snapshot(src.parent) == before
    out = tmp_path / "out" / "avatar.jpg"
    assert Image.open(out).format == "JPEG"
    original, result = np.asarray(Image.open(src)), np.asarray(Image.open(out))
    keep = garment_and_background(data_file("images", "replicant_face_00000_mask.png"))
    assert int(np.any(result != original, axis=2)[keep].sum()) == 0
    assert np.any(result != original, axis=2).sum() > 500
