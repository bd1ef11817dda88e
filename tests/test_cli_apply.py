"""End-to-end `realface apply` / `realface invert` with tiny generators: outputs, garment pixels,
manifest, failures, resume after kill -9, and the weights error when G_real is missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from realface.cli import main
from tests.conftest import data_file
from tests.test_pipeline import garment_and_background


def run_cli(*args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture
def models(apply_models):
    m = apply_models
    return ["--real", m["real"], "--rendering", m["rendering"], "--lpips-vgg", m["vgg"]]


def _catalogue(root):
    (root / "tops").mkdir(parents=True)
    (root / "dresses").mkdir()
    src = data_file("images", "replicant_face_00000.jpg")
    (root / "tops" / "avatar.jpg").write_bytes(src.read_bytes())
    Image.open(src).save(root / "dresses" / "avatar.png")
    (root / "dresses" / "broken.png").write_bytes(b"this is not an image")
    Image.new("RGB", (300, 300), (90, 90, 90)).save(root / "tops" / "noface.png")
    return root


def _manifest(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]


def test_apply_catalogue_outputs_failures_and_rerun(tmp_path, models, capsys):
    cat = _catalogue(tmp_path / "catalogue")
    out = tmp_path / "out"
    args = ["apply", cat, "-o", out, *models, "--steps", "2", "--no-progress", "--mask", "landmarks"]
    assert run_cli(*args, "--save-latents", "--sheet") == 1  # two bad inputs -> exit status 1
    text = capsys.readouterr()
    assert "broken.png" in text.out + text.err and "Traceback" not in text.err
    state = {}
    for rec in _manifest(out):
        state[rec["key"]] = rec
    assert state["tops/avatar.jpg"]["status"] == "done" and state["dresses/avatar.png"]["status"] == "done"
    assert (
        state["dresses/broken.png"]["status"] == "failed" and state["tops/noface.png"]["status"] == "failed"
    )
    assert "noface.png" in state["tops/noface.png"]["error"]
    for name in (
        "tops/avatar.jpg",
        "dresses/avatar.png",
        "dresses/avatar_face0_latent.safetensors",
        "dresses/avatar_face0_sheet.png",
        "config.json",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    # The PNG path is lossless: garment and background pixels are bit-identical to the input.
    keep = garment_and_background(data_file("images", "replicant_face_00000_mask.png"))
    src = np.asarray(Image.open(cat / "dresses" / "avatar.png"))
    res = np.asarray(Image.open(out / "dresses" / "avatar.png"))
    assert np.array_equal(res[keep], src[keep]) and not np.array_equal(res, src)
    assert Image.open(out / "tops" / "avatar.jpg").format == "JPEG"
    # Rerun: finished images are skipped, failed ones retried (and fail again).
    n_before = len(_manifest(out))
    assert run_cli(*args, "--save-latents", "--sheet") == 1
    new = _manifest(out)[n_before:]
    assert sorted(r["key"] for r in new if r["status"] == "started") == [
        "dresses/broken.png",
        "tops/noface.png",
    ]


def test_apply_resumes_after_kill_9(tmp_path, models):
    cat = tmp_path / "cat"
    cat.mkdir()
    src = data_file("images", "replicant_face_00000.jpg")
    for i in range(4):
        Image.open(src).save(cat / f"look{i}.png")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "realface",
        "apply",
        cat,
        "-o",
        out,
        *models,
        "--steps",
        "25",
        "--no-progress",
        "--mask",
        "landmarks",
    ]
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (out / "manifest.jsonl").exists() and any(r["status"] == "done" for r in _manifest(out)):
                break
            time.sleep(0.05)
        else:
            pytest.fail("no image finished within 120 s")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = {r["key"] for r in _manifest(out) if r["status"] == "done"}
    assert 1 <= len(done_before) < 4
    visible = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert visible <= {"manifest.jsonl", "config.json", *(f"look{i}.png" for i in range(4))}
    for name in done_before:  # every visible output is a complete image
        Image.open(out / name).load()
    assert (
        run_cli("apply", cat, "-o", out, *models, "--steps", "25", "--no-progress", "--mask", "landmarks")
        == 0
    )
    records = _manifest(out)
    for i in range(4):
        key = f"look{i}.png"
        n_done = sum(1 for r in records if r["key"] == key and r["status"] == "done")
        assert n_done == 1, key
        Image.open(out / key).load()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_apply_without_weights_stops_with_the_weights_error(tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.open(data_file("images", "replicant_face_00000.jpg")).save(img)
    assert run_cli("apply", img, "-o", tmp_path / "out", "--no-progress") == 1
    err = capsys.readouterr().err
    assert "sg2ada-ffhq1024" in err and "realface weights import" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_apply_dry_run_prints_config(tmp_path, capsys):
    assert (
        run_cli(
            "apply",
            tmp_path,
            "-o",
            tmp_path / "o",
            "--dry-run",
            "--steps",
            "7",
            "--coarse-to-fine",
            "--fine-steps",
            "2",
        )
        == 0
    )
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["mode"] == "baseline" and cfg["config"]["invert"]["steps"] == 7
    assert cfg["config"]["invert"]["coarse_to_fine"] is True


def test_invert_command(tmp_path, models):
    from realface.pipeline import load_latent

    aligned = tmp_path / "face.png"
    crop = Image.open(data_file("align", "replicant_face_00000_aligned_256.png")).convert("RGB")
    crop.resize((64, 64), Image.LANCZOS).save(aligned)  # an aligned face at the tiny generator's size
    net = models[models.index("--rendering") + 1]
    vgg = models[models.index("--lpips-vgg") + 1]
    out = tmp_path / "inv"
    args = [
        "invert",
        aligned,
        "--network",
        net,
        "-o",
        out,
        "--steps",
        "3",
        "--lpips-vgg",
        vgg,
        "--no-progress",
    ]
    assert run_cli(*args) == 0
    ws, noise = load_latent(out / "face_latent.safetensors")
    assert ws.shape == (1, 10, 64) and noise is not None
    assert Image.open(out / "face_proj.png").size == (64, 64)
    mtime = os.stat(out / "face_latent.safetensors").st_mtime_ns
    assert run_cli(*args) == 0  # already done: skipped
    assert os.stat(out / "face_latent.safetensors").st_mtime_ns == mtime
    # other settings: inverted again, not skipped as "already inverted"
    args[args.index("--steps") + 1] = "4"
    assert run_cli(*args) == 0
    assert _latent_meta(out / "face_latent.safetensors")["steps"] == "4"
    mtime = os.stat(out / "face_latent.safetensors").st_mtime_ns
    assert run_cli(*args) == 0  # the same new settings: skipped
    assert os.stat(out / "face_latent.safetensors").st_mtime_ns == mtime


def _latent_meta(path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


class _FakeJob:
    """Stands in for RealFace in run_catalogue: writes the composite and ``faces`` per-face sheets."""

    def __init__(self, faces: int, sheet: bool = True) -> None:
        from realface.pipeline import ApplyConfig, SaveOptions

        self.config = ApplyConfig(save=SaveOptions(sheet=sheet))
        self.faces = faces

    def run_file(self, src, dst, progress=None):
        from realface.utils.fs import atomic_write_bytes

        written = []
        for i in range(self.faces):
            sheet = dst.with_name(f"{dst.stem}_face{i}_sheet.png")
            atomic_write_bytes(sheet, f"face {i} of {self.faces}".encode())
            written.append(sheet)
        atomic_write_bytes(dst, b"composite")
        return [*written, dst]


def test_catalogue_reserves_per_face_names_and_removes_stale_ones(tmp_path):
    from realface.errors import ConfigError, RealFaceError
    from realface.pipeline import run_catalogue

    cat, out = tmp_path / "cat", tmp_path / "out"
    cat.mkdir()
    (cat / "astronaut.png").write_bytes(b"an image")
    info = {"config": "two faces"}
    assert run_catalogue(_FakeJob(2), [cat], out, info, progress=False).done == 1
    assert (out / "astronaut_face1_sheet.png").is_file()
    summary = run_catalogue(_FakeJob(1), [cat], out, {"config": "one face"}, progress=False)
    assert summary.done == 1 and summary.redone_config == 1
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "astronaut.png",
        "astronaut_face0_sheet.png",
        "config.json",
        "manifest.jsonl",
        "summary.json",
    ]
    assert (out / "astronaut_face0_sheet.png").read_bytes() == b"face 0 of 1"
    assert json.loads((out / "config.json").read_text()) == {"config": "one face"}

    (cat / "astronaut_face0_sheet.png").write_bytes(b"an input that looks like a sheet")
    with pytest.raises(RealFaceError, match="astronaut_face<N>_"):
        run_catalogue(_FakeJob(1), [cat], out, info, progress=False)
    with pytest.raises(ConfigError, match="'.gif' is not one of png, jpg, webp"):
        run_catalogue(_FakeJob(1, sheet=False), [cat], out, info, suffix=".gif", progress=False)


def test_transfer_layers_are_checked_when_the_pipeline_is_built(models):
    from realface.checkpoints import load_generator
    from realface.errors import ConfigError
    from realface.nn.lpips import load_lpips_vgg
    from realface.pipeline import ApplyConfig, RealFace

    real = load_generator(models[models.index("--real") + 1])
    lpips = load_lpips_vgg(vgg_path=models[models.index("--lpips-vgg") + 1])
    with pytest.raises(ConfigError, match="layer 10 is out of range") as info:
        RealFace(real, None, lpips, ApplyConfig(transfer_layers=(0, 10)))
    assert info.value.field == "transfer_layers"
    assert RealFace(real, None, lpips, ApplyConfig(transfer_layers=(0, 9))).config.transfer_layers == (0, 9)
