"""``InvertConfig.space``: W+ (one latent per synthesis layer) or W (one latent broadcast to every
layer, as the official projector)."""

from __future__ import annotations

import json

import pytest
import torch

from realface.errors import ConfigError
from realface.invert import InvertConfig, PixelLoss, invert
from tests._helpers import tiny_generator
from tests.robustness._cli import assert_refused, run_realface


@pytest.fixture(scope="module")
def world():
    G = tiny_generator(16, seed=5)
    torch.manual_seed(1)
    with torch.no_grad():
        z = torch.randn(2, G.z_dim)
        w = G.mapping(z, None, truncation_psi=0.7)  # [2, num_ws, w_dim], one w per face
        target = G.synthesis(w, noise_mode="const")
    return G, w, target


def _run(G, target, space, steps=60):
    cfg = InvertConfig(steps=steps, w_avg_samples=300, space=space, optimize_noise=False, lr=0.05)
    return invert(G, target, PixelLoss(16), cfg, seeds=[0, 1])


def test_w_space_gives_one_latent_per_face_on_every_layer(world):
    G, _, target = world
    result = _run(G, target, "w")
    assert result.ws.shape == (2, G.num_ws, G.w_dim)
    assert torch.equal(result.ws, result.ws[:, :1].expand_as(result.ws))  # every layer the same w
    plus = _run(G, target, "w+")
    assert plus.ws.shape == (2, G.num_ws, G.w_dim)
    assert not torch.allclose(plus.ws[:, 0], plus.ws[:, -1])  # W+ moves the layers apart


def test_w_space_fits_a_face_that_lies_in_w(world):
    G, w_true, target = world
    result = _run(G, target, "w", steps=150)
    hist = result.loss_history
    assert (result.final_loss < 0.25 * hist[0]).all(), (hist[0], result.final_loss)
    # The recovered w is nearer the true one than the start (w_avg) was.
    from realface.invert import w_stats

    w_avg = w_stats(G, 300).w_avg
    start = (w_true[:, 0] - w_avg).norm(dim=1)
    end = (w_true[:, 0] - result.ws[:, 0]).norm(dim=1)
    assert (end < start).all(), (start, end)


def test_a_bad_space_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="space must be w\\+ or w, got 'z'"):
        InvertConfig(space="z")
    run = run_realface("apply", tmp_path, "-o", tmp_path / "o", "--space", "z")
    assert_refused(run, "space", outputs=[tmp_path / "o"])


def test_apply_records_the_space(tmp_path):
    run = run_realface("apply", tmp_path, "-o", tmp_path / "o", "--dry-run", "--space", "w")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["config"]["invert"]["space"] == "w"
    run = run_realface("apply", tmp_path, "-o", tmp_path / "o", "--dry-run")
    assert json.loads(run.stdout)["config"]["invert"]["space"] == "w+"  # the paper's stays default
