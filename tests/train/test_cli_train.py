"""End to end: `realface train` -> `realface export` -> `realface apply --rendering`."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from realface.checkpoints import convert_pickle
from tests.conftest import data_file
from tests.test_cli_apply import run_cli


def test_train_export_apply(setup, tmp_path, capsys):
    run = tmp_path / "run"
    common = [
        "--data",
        setup["data"],
        "--real",
        setup["pkl"],
        "--batch",
        "4",
        "--tick",
        "0.004",
        "--snap",
        "1",
        "--workers",
        "0",
        "--lpips-vgg",
        setup["vgg"],
        "--no-progress",
    ]
    assert run_cli("train", *common, "--out", run, "--kimg", "0.008") == 0
    opts = json.loads((run / "training_options.json").read_text())
    assert opts["kimg"] == 0.008
    assert opts["identity"]["sketch_weight"] == 5e-6 and opts["identity"]["color_weight"] == 3.75e3
    assert run_cli("train", *common, "--out", run, "--kimg", "0.012", "--resume", run) == 0  # continues
    states = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert states[-1] == "ckpt-000000012"
    g_rend = tmp_path / "G_rendering.safetensors"
    assert run_cli("export", run, "-o", g_rend) == 0
    img = tmp_path / "look.png"
    Image.open(data_file("images", "replicant_face_00000.jpg")).save(img)
    out = tmp_path / "out"
    args = [
        "apply",
        img,
        "-o",
        out,
        "--real",
        setup["pkl"],
        "--rendering",
        g_rend,
        "--lpips-vgg",
        setup["vgg"],
        "--steps",
        "2",
        "--no-progress",
        "--mask",
        "landmarks",
    ]
    assert run_cli(*args) == 0
    assert not np.array_equal(np.asarray(Image.open(out / "look.png")), np.asarray(Image.open(img)))


def test_train_needs_a_discriminator(setup, tmp_path, capsys):
    only_g = convert_pickle(setup["pkl"], tmp_path / "g.safetensors", only=("G_ema",))
    common = [
        "--data",
        setup["data"],
        "--real",
        only_g,
        "--batch",
        "4",
        "--tick",
        "0.004",
        "--workers",
        "0",
        "--lpips-vgg",
        setup["vgg"],
        "--no-progress",
        "--kimg",
        "0.004",
        "--out",
        tmp_path / "run",
    ]
    assert run_cli("train", *common) == 1
    err = capsys.readouterr().err
    assert "--allow-random-d" in err and "Traceback" not in err
    assert run_cli("train", *common, "--allow-random-d") == 0


def test_train_dry_run(setup, tmp_path, capsys):
    assert run_cli("train", "--data", setup["data"], "--real", setup["pkl"], "--dry-run") == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["batch"] == 32 and cfg["lr"] == 0.002 and cfg["kimg"] == 40.0 and cfg["ada"] is True


def test_train_dry_run_identity_options(setup, capsys):
    base = ["train", "--data", setup["data"], "--real", setup["pkl"], "--dry-run"]
    assert run_cli(*base) == 0
    identity = json.loads(capsys.readouterr().out)["identity"]
    assert identity["scale_to_resolution"] is False and identity["sketch_weight"] == 5e-6
    extra = ["--identity-scale-to-resolution", "--sketch-weight", "1e-5", "--color-weight", "20"]
    assert run_cli(*base, *extra) == 0
    identity = json.loads(capsys.readouterr().out)["identity"]
    assert identity["scale_to_resolution"] is True
    assert (identity["sketch_weight"], identity["color_weight"]) == (1e-5, 20.0)
