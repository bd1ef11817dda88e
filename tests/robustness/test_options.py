"""Bad option values on the command line: one `error:` line that names the option, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.robustness._cli import assert_refused, run_realface, snapshot

CASES = [
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--sketch-weight", "-1"], "--sketch-weight"),
    (["train", "--sketch-weight", "-1", "--dry-run"], "--sketch-weight"),
    (["train", "--color-weight", "-1", "--dry-run"], "--color-weight"),
    (["train", "--color-weight", "inf", "--dry-run"], "--color-weight"),
    (["train", "--batch", "0"], "--batch"),
    (["train", "--tick", "0"], "--tick"),
    (["train", "--workers", "-1"], "--workers"),
    (["generate", "--seeds", "0-9999999999"], "--seeds"),
    (["apply", "--transfer-layers", "0-999999999"], "--transfer-layers"),
    (["apply", "--coarse-to-fine", "--steps", "6"], "--fine-steps"),
    (["apply", "--batch", "0"], "--batch"),
]


@pytest.mark.parametrize(("args", "option"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_values_name_their_option(tmp_path: Path, args: list[str], option: str):
    image = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(image)
    out = tmp_path / "out"
    if args[0] == "train":
        full = [*args, "--data", tmp_path / "data", "--real", image, "--out", out]
    elif args[0] == "generate":
        full = [*args, "--network", image, "--outdir", out]
    else:
        full = [args[0], image, "--out", out, *args[1:]]
    before = snapshot(image)
    assert_refused(run_realface(*full), option, before, outputs=[out])


@pytest.mark.parametrize(("option", "value"), [("--sketch-weight", "-1"), ("--color-weight", "nan")])
def test_bench_transfer_refuses_bad_identity_weights(tmp_path: Path, option: str, value: str):
    out = tmp_path / "bench"
    assert_refused(
        run_realface("bench", "transfer", "--quick", "-o", out, option, value), option, outputs=[out]
    )
