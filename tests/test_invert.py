"""W+ inversion on tiny real-architecture generators."""

from __future__ import annotations

import pytest
import torch

from realface.invert import InvertConfig, PixelLoss, invert, noise_regularization, w_stats
from tests._helpers import tiny_generator


@pytest.fixture(scope="module")
def G():
    return tiny_generator(32, seed=11)


def _target(G, seed=0, n=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        ws = G.mapping(torch.randn(n, G.z_dim), None, truncation_psi=0.7)
        return G.synthesis(ws, noise_mode="const"), ws


def test_inversion_recovers_an_image_the_generator_made(G):
    target, _ = _target(G, seed=1)
    cfg = InvertConfig(steps=150, lr=0.1, optimize_noise=False, w_avg_samples=2000)
    res = invert(G, target, PixelLoss(32), cfg)
    start = res.loss_history[0].item()
    assert res.ws.shape == (1, G.num_ws, G.w_dim)
    assert res.loss_history.shape == (150, 1)
    # Bound: the reconstruction error falls to under 5% of the error of the w_avg image.
    assert res.final_loss.item() < 0.05 * start, (start, res.final_loss.item())
    with torch.no_grad():
        recon = G.synthesis(res.ws, noise_mode="const")
    assert (recon - target).square().mean().item() == pytest.approx(res.final_loss.item(), rel=1e-4)


def test_noise_is_optimised_and_normalised(G):
    target, _ = _target(G, seed=2)
    res = invert(G, target, PixelLoss(32), InvertConfig(steps=40, w_avg_samples=2000))
    assert res.noise is not None and len(res.noise) == len(G.synthesis.noise_layers())
    for n, layer in zip(res.noise, G.synthesis.noise_layers(), strict=True):
        assert n.shape == (1, 1, layer.resolution, layer.resolution)
        assert abs(n.mean().item()) < 1e-4 and n.square().mean().item() == pytest.approx(1.0, rel=1e-3)
    assert res.final_loss.item() < res.loss_history[0].item()
    # G itself is untouched.
    assert torch.equal(
        G.synthesis.b4.conv1.noise_const, tiny_generator(32, seed=11).synthesis.b4.conv1.noise_const
    )


def test_batch_equals_single_runs(G):
    targets, _ = _target(G, seed=3, n=3)
    cfg = InvertConfig(steps=25, w_avg_samples=2000)
    seeds = [5, 6, 7]
    batch = invert(G, targets, PixelLoss(32), cfg, seeds=seeds)
    for i in range(3):
        single = invert(G, targets[i : i + 1], PixelLoss(32), cfg, seeds=[seeds[i]])
        torch.testing.assert_close(batch.ws[i : i + 1], single.ws, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(
            batch.loss_history[:, i : i + 1], single.loss_history, atol=1e-5, rtol=1e-3
        )
        for a, b in zip(batch.noise, single.noise, strict=True):
            torch.testing.assert_close(a[i : i + 1], b, atol=1e-4, rtol=1e-4)


def test_deterministic_and_seed_dependent(G):
    target, _ = _target(G, seed=4)
    cfg = InvertConfig(steps=10, w_avg_samples=2000)
    a = invert(G, target, PixelLoss(32), cfg, seeds=[1])
    b = invert(G, target, PixelLoss(32), cfg, seeds=[1])
    c = invert(G, target, PixelLoss(32), cfg, seeds=[2])
    assert torch.equal(a.ws, b.ws) and torch.equal(a.loss_history, b.loss_history)
    assert not torch.equal(a.ws, c.ws)


def test_coarse_to_fine_skips_high_resolution_blocks(G):
    target, _ = _target(G, seed=5)
    calls = []
    hook = G.synthesis.b32.register_forward_hook(lambda *a: calls.append(1))
    try:
        cfg = InvertConfig(
            steps=30, coarse_to_fine=True, coarse_resolution=16, fine_steps=5, w_avg_samples=2000
        )
        res = invert(G, target, PixelLoss(32), cfg)
    finally:
        hook.remove()
    assert len(calls) == 5 + 1  # fine steps + the final evaluation
    assert res.final_loss.item() < res.loss_history[0].item()


def test_early_stop_and_callback(G):
    target, _ = _target(G, seed=6)
    seen = []
    cfg = InvertConfig(steps=200, lr=1e-6, early_stop_patience=5, early_stop_tol=0.01, w_avg_samples=2000)
    res = invert(G, target, PixelLoss(32), cfg, callback=lambda s, n, loss: seen.append((s, n, loss.shape)))
    assert res.steps_run < 200 and len(seen) == res.steps_run
    assert seen[0] == (0, 200, torch.Size([1]))


def test_input_validation(G):
    with pytest.raises(ValueError, match="targets must be"):
        invert(G, torch.zeros(1, 3, 16, 16), PixelLoss(32), InvertConfig(steps=1))
    with pytest.raises(ValueError, match="one seed per target"):
        invert(G, torch.zeros(2, 3, 32, 32), PixelLoss(32), InvertConfig(steps=1), seeds=[1])
    with pytest.raises(Exception, match="steps"):
        InvertConfig(steps=0)


def test_noise_regularization_penalises_correlated_noise():
    torch.manual_seed(0)
    white = torch.randn(2, 1, 32, 32)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(2, 1, 35, 35), 4, stride=1)  # [2,1,32,32]
    smooth = (smooth - smooth.mean()) / smooth.std()
    rw, rs = noise_regularization([white]), noise_regularization([smooth])
    assert rw.shape == (2,) and (rs > 10 * rw).all()


def test_w_stats_are_cached_and_sane(G):
    a = w_stats(G, 2000)
    b = w_stats(G, 2000)
    assert a is b and a.w_avg.shape == (G.w_dim,) and a.w_std > 0
