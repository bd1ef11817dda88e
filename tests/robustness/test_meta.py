"""Untrusted metadata, as a user meets it on the command line: hostile alignment JSON for
``realface paste``, network files whose headers or pickled ``_init_kwargs`` lie, and broken training
checkpoints. Each is one ``error:`` line naming the file, exit status 1, no output, inputs unchanged."""

from __future__ import annotations

import copy
import json

import numpy as np
from PIL import Image

from tests.conftest import data_file
from tests.face.test_meta import _nan_quad, _scaled_quad, valid_meta
from tests.robustness._cli import assert_refused, run_realface, snapshot


def test_paste_refuses_hostile_alignment_metadata(tmp_path):
    image = data_file("images", "astronaut.png")
    face = tmp_path / "new_face.png"
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(face)

    def huge_landmarks(d):
        d["face"]["landmarks_68"] = [[x * 1e12, y] for x, y in d["face"]["landmarks_68"]]

    def nan_landmarks(d):
        d["face"]["landmarks_68"][0] = [float("nan"), float("nan")]

    cases = {
        "nan_quad": (_nan_quad, "quad_tl_bl_br_tr[2].y must be a finite number"),
        "quad_1e4": (lambda d: _scaled_quad(d, 1e4), "far outside the 512x512 image"),
        "output_size": (lambda d: d["face"]["alignment"].update(output_size=10**6), "output_size"),
        "nan_landmarks": (nan_landmarks, "landmarks_68[0].x must be a finite number"),
        "huge_landmarks": (huge_landmarks, "landmarks_68[0] ="),
    }
    for name, (edit, message) in cases.items():
        d = copy.deepcopy(valid_meta())
        edit(d)
        meta = tmp_path / f"{name}.json"
        meta.write_text(json.dumps(d))
        out = tmp_path / f"{name}_out.png"
        before = snapshot(meta, face, image)
        run = run_realface(
            "paste", "--image", image, "--face", face, "--meta", meta, "-o", out, "--mask", "landmarks",
            env={"REALFACE_HOME": str(tmp_path / "home")},
        )  # fmt: skip
        assert_refused(run, f"{meta}: ", inputs=before, outputs=[out])
        assert message in run.error_lines[0], run.stderr
