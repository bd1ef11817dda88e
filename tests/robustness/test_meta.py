"""Untrusted metadata, as a user meets it on the command line: hostile alignment JSON for
``realface paste``, network files whose headers or pickled ``_init_kwargs`` lie, and broken training
checkpoints. Each is one ``error:`` line naming the file, exit status 1, no output, inputs unchanged."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import data_file
from tests.face.test_meta import _nan_quad, _scaled_quad, valid_meta
from tests.robustness._cli import assert_refused, run_realface, snapshot


@pytest.fixture(scope="module")
def setup_train(tmp_path_factory):
    """A tiny training set (fixture images, any content will do), the fixture pickle and a random VGG16."""
    from tests._helpers import random_vgg16_file

    root = tmp_path_factory.mktemp("train")
    data = root / "data"
    data.mkdir()
    rng = np.random.RandomState(0)
    for i in range(8):
        Image.fromarray(rng.randint(0, 256, (64, 64, 3), dtype=np.uint8)).save(data / f"{i:03d}.png")
    pkl = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    return {
        "pkl": str(pkl),
        "data": str(data),
        "vgg": str(random_vgg16_file(root / "vgg16.pth")),
        "root": root,
    }


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


def test_network_commands_refuse_hostile_network_files(tmp_path):
    from tests._hostile import NETWORK_CASES

    env = {"REALFACE_HOME": str(tmp_path / "home")}
    for case in (
        "st_header_list",
        "st_nested_3000",
        "st_too_big_for_file",
        "pk_parameter_int",
        "pk_state_list",
    ):
        build, message = NETWORK_CASES[case]
        path = build(tmp_path / (f"{case}.safetensors" if case.startswith("st_") else f"{case}.pkl"))
        before = snapshot(path)
        out = tmp_path / f"{case}_out"
        if case == "pk_state_list":
            run = run_realface("convert", path, out, env=env)
        else:
            run = run_realface(
                "generate", "--network", path, "--seeds", "0", "-o", out, "--no-progress", env=env
            )
        assert_refused(run, f"{path}: ", inputs=before, outputs=[out])
        assert message in run.error_lines[0], run.stderr


def test_train_and_export_refuse_broken_checkpoints(setup_train, tmp_path):
    from tests.train.test_checkpoint_read import make_run

    run_dir = make_run(setup_train, tmp_path / "run")
    newest = run_dir / "checkpoints" / "ckpt-000000008"
    (newest / "state.json").write_text('{"cur_nimg": 8, "cur_tick"')
    before = snapshot(run_dir)
    run = run_realface(
        "train", "--data", setup_train["data"], "--real", setup_train["pkl"], "--resume", run_dir,
        "--batch", "4", "--workers", "0", "--lpips-vgg", setup_train["vgg"], "--no-progress",
        env={"REALFACE_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert_refused(run, f"{newest / 'state.json'}: is not valid JSON", inputs=before)
    assert "previous intact checkpoint is ckpt-000000004" in run.error_lines[0]
    assert {str(p) for p in run_dir.rglob("*") if p.is_file()} == set(before)  # nothing new written
    (newest / "state.json").unlink()
    shutil.copy(run_dir / "checkpoints" / "ckpt-000000004" / "state.json", newest / "state.json")
    (newest / "state.safetensors").write_bytes(b"")
    before = snapshot(run_dir)
    out = tmp_path / "G_rendering.safetensors"
    run = run_realface("export", run_dir, "-o", out, env={"REALFACE_HOME": str(tmp_path / "home")})
    assert_refused(run, f"{newest / 'state.safetensors'}: is empty (0 bytes", inputs=before, outputs=[out])
