"""``--precision fp32|bf16|auto``: how auto resolves, and that every front end passes the choice on."""

from __future__ import annotations

import json

import pytest
import torch

import realface.precision as precision_mod
from realface.errors import ConfigError
from realface.invert import InvertConfig, PixelLoss, invert
from realface.precision import resolve_precision
from tests._helpers import tiny_generator
from tests.robustness._cli import assert_refused, run_realface


def test_auto_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(precision_mod, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision_mod, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "meta") == "fp32"  # neither a CPU nor CUDA: the reference
    for fixed in ("fp32", "bf16"):
        assert resolve_precision(fixed, "cpu") == fixed


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="precision must be auto, fp32 or bf16, got 'fp16'"):
        resolve_precision("fp16")
    with pytest.raises(ConfigError, match="precision"):
        InvertConfig(precision="half")


def test_auto_inverts_exactly_as_the_precision_it_resolves_to(monkeypatch):
    G = tiny_generator(16, seed=3)
    torch.manual_seed(0)
    with torch.no_grad():
        target = G(torch.randn(1, G.z_dim), None, truncation_psi=0.7, noise_mode="const")

    def run(p):
        cfg = InvertConfig(steps=4, w_avg_samples=200, precision=p)
        return invert(G, target, PixelLoss(16), cfg).ws

    fp32, bf16 = run("fp32"), run("bf16")
    assert not torch.equal(fp32, bf16)  # bf16 autocast really changes the arithmetic
    monkeypatch.setattr(precision_mod, "cpu_has_bf16", lambda: True)
    assert torch.equal(run("auto"), bf16)
    monkeypatch.setattr(precision_mod, "cpu_has_bf16", lambda: False)
    assert torch.equal(run("auto"), fp32)


def test_apply_records_the_precision(tmp_path):
    run = run_realface("apply", tmp_path, "-o", tmp_path / "o", "--dry-run", "--precision", "auto")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["config"]["invert"]["precision"] == "auto"
    run = run_realface("apply", tmp_path, "-o", tmp_path / "o", "--dry-run")
    assert json.loads(run.stdout)["config"]["invert"]["precision"] == "fp32"  # the reference stays default


def test_a_bad_precision_is_one_error_line(tmp_path):
    run = run_realface("apply", tmp_path, "-o", tmp_path / "o", "--precision", "fp8")
    assert_refused(run, "precision", outputs=[tmp_path / "o"])


def test_the_page_passes_the_precision_on():
    from realface.ui.config import Settings

    cfg = Settings(precision="bf16").apply_config(batch_size=1, max_pixels=10**6, save_all=False)
    assert cfg.invert.precision == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        Settings(precision="fp16")
