"""End-to-end tests of `realface convert` and `realface generate`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from realface.checkpoints import load_generator, load_networks
from realface.cli import main
from realface.sampling import parse_seeds, z_from_seed
from tests.conftest import data_file


def run_cli(*args: str) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_python_m_realface_help():
    out = subprocess.run(
        [sys.executable, "-m", "realface", "--help"], capture_output=True, text=True, check=True
    )
    for cmd in ("generate", "convert"):
        assert cmd in out.stdout


def test_generate_matches_official_fixture_images(tmp_path):
    """Seeds go through the official RandomState latents; the PNG equals G_ema(z) quantised."""
    pkl = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    assert (
        run_cli(
            "generate",
            "--network",
            pkl,
            "--seeds",
            "0-2,7",
            "--trunc",
            "0.7",
            "-o",
            tmp_path,
            "--grid",
            "--no-progress",
            "--device",
            "cpu",
        )
        == 0
    )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["grid.png", "seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    G = load_generator(pkl)
    with torch.no_grad():
        img = G(z_from_seed(7, G.z_dim), None, truncation_psi=0.7, noise_mode="const")
    want = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    got = np.asarray(Image.open(tmp_path / "seed0007.png"))
    assert got.shape == (64, 64, 3) and np.array_equal(got, want)
    assert Image.open(tmp_path / "grid.png").size == (128, 128)


def test_convert_then_generate_from_safetensors(tmp_path):
    pkl = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    out = tmp_path / "tiny.safetensors"
    assert run_cli("convert", pkl, out) == 0
    assert set(load_networks(out)) == {"G", "D", "G_ema"}
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("generate", "--network", pkl, "--seeds", "3", "-o", a, "--no-progress") == 0
    assert run_cli("generate", "--network", out, "--seeds", "3", "-o", b, "--no-progress") == 0
    assert (a / "seed0003.png").read_bytes() == (b / "seed0003.png").read_bytes()


def test_cli_errors_are_one_line_messages(tmp_path, capsys):
    assert run_cli("generate", "--network", tmp_path / "missing.pkl", "-o", tmp_path) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "missing.pkl" in err and "Traceback" not in err
    pkl = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    assert run_cli("generate", "--network", pkl, "--seeds", "x", "-o", tmp_path) == 1
    assert "invalid seed" in capsys.readouterr().err
    assert run_cli("generate", "--network", pkl, "--class", "1", "-o", tmp_path) == 1
    assert "unconditional" in capsys.readouterr().err
    assert not any(tmp_path.glob("*.png"))


def test_parse_seeds():
    assert parse_seeds("0-3,7,10-11") == [0, 1, 2, 3, 7, 10, 11]
    for bad in ("", "a", "3-1", "1--2"):
        with pytest.raises(Exception, match="seed"):
            parse_seeds(bad)


def test_generate_and_convert_refuse_hostile_network_metadata(tmp_path, capsys):
    """Every hostile header or pickled record: exit 1, one `error:` line naming the file, nothing written."""
    from tests._hostile import NETWORK_CASES

    for case, (build, message) in NETWORK_CASES.items():
        path = build(tmp_path / (f"{case}.safetensors" if case.startswith("st_") else f"{case}.pkl"))
        before = path.read_bytes()
        out = tmp_path / f"{case}_out"
        argv = ["generate", "--network", path, "--seeds", "0", "-o", out, "--no-progress", "--device", "cpu"]
        if case.startswith("pk_"):
            argv = ["convert", path, tmp_path / f"{case}_converted.safetensors"]
        code = run_cli(*argv)
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert code == 1 and len(lines) == 1, (case, err)
        assert lines[0].startswith(f"error: {path}: ") and message in lines[0], (case, err)
        assert "unexpected" not in lines[0] and "Traceback" not in err, (case, err)
        assert not out.exists() and not (tmp_path / f"{case}_converted.safetensors").exists(), case
        assert path.read_bytes() == before, case
