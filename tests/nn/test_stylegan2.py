"""Tiny real-architecture StyleGAN2 networks: shapes, names, gradients, determinism, options."""

from __future__ import annotations

import pytest
import torch

from realface.nn.stylegan2 import Discriminator, Generator, config_f_kwargs
from tests._helpers import tiny_discriminator, tiny_generator


def test_ffhq1024_names_shapes_and_counts():
    """The FFHQ config-f generator/discriminator have the official key set and parameter counts."""
    with torch.device("meta"):
        G = Generator(
            z_dim=512,
            c_dim=0,
            w_dim=512,
            img_resolution=1024,
            img_channels=3,
            mapping_kwargs={"num_layers": 8},
            synthesis_kwargs={
                "channel_base": 32768,
                "channel_max": 512,
                "num_fp16_res": 4,
                "conv_clamp": 256,
            },
        )
        D = Discriminator(
            c_dim=0,
            img_resolution=1024,
            img_channels=3,
            channel_base=32768,
            channel_max=512,
            num_fp16_res=4,
            conv_clamp=256,
            epilogue_kwargs={"mbstd_group_size": 4},
        )
    sd = G.state_dict()
    assert G.init_kwargs == config_f_kwargs(1024, num_fp16_res=4, conv_clamp=256)
    assert len(sd) == 182
    assert sum(1 for _ in G.parameters()) == 138
    assert sum(p.numel() for p in G.parameters()) == 30_370_060
    assert sum(p.numel() for p in G.mapping.parameters()) == 2_101_248
    assert G.num_ws == 18
    assert list(sd)[0].startswith("synthesis.") and list(sd)[-1].startswith("mapping.")
    shapes = {
        "mapping.w_avg": (512,),
        "synthesis.b4.const": (512, 4, 4),
        "synthesis.b4.conv1.noise_const": (4, 4),
        "synthesis.b1024.conv0.weight": (32, 64, 3, 3),
        "synthesis.b1024.conv0.affine.weight": (64, 512),
        "synthesis.b1024.torgb.weight": (3, 32, 1, 1),
        "synthesis.b256.conv1.noise_const": (256, 256),
        "synthesis.b8.resample_filter": (4, 4),
    }
    for k, shape in shapes.items():
        assert tuple(sd[k].shape) == shape, k
    assert len(G.synthesis.noise_layers()) == 17
    dsd = D.state_dict()
    assert len(dsd) == 82
    assert sum(1 for _ in D.parameters()) == 48
    assert sum(p.numel() for p in D.parameters()) == 29_012_513
    assert tuple(dsd["b4.conv.weight"].shape) == (512, 513, 3, 3)
    assert tuple(dsd["b4.fc.weight"].shape) == (512, 8192)
    assert tuple(dsd["b1024.skip.weight"].shape) == (64, 32, 1, 1)
    assert "b1024.skip.bias" not in dsd


def test_generator_shapes_and_range():
    G = tiny_generator(32)
    z = torch.randn(3, G.z_dim)
    ws = G.mapping(z, None)
    assert ws.shape == (3, G.num_ws, G.w_dim)
    img = G.synthesis(ws, noise_mode="const")
    assert img.shape == (3, 3, 32, 32) and img.dtype == torch.float32
    assert torch.isfinite(img).all()
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(ws[:, :-1])
    with pytest.raises(ValueError, match="z must be"):
        G.mapping(torch.randn(3, G.z_dim + 1), None)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="bogus")


def test_noise_modes_and_determinism():
    G = tiny_generator(32)
    ws = G.mapping(torch.randn(2, G.z_dim), None)
    with torch.no_grad():
        a = G.synthesis(ws, noise_mode="const")
        b = G.synthesis(ws, noise_mode="const")
        torch.manual_seed(5)
        r1 = G.synthesis(ws, noise_mode="random")
        torch.manual_seed(5)
        r2 = G.synthesis(ws, noise_mode="random")
        r3 = G.synthesis(ws, noise_mode="random")
        n = G.synthesis(ws, noise_mode="none")
    assert torch.equal(a, b) and torch.equal(r1, r2)
    assert not torch.equal(r1, r3) and not torch.equal(a, n)


def test_explicit_noise_equals_const_mode():
    G = tiny_generator(32)
    ws = G.mapping(torch.randn(2, G.z_dim), None)
    noise = [layer.noise_const[None, None] for layer in G.synthesis.noise_layers()]
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(ws, noise=noise), G.synthesis(ws, noise_mode="const"))
        with pytest.raises(ValueError, match="noise must hold"):
            G.synthesis(ws, noise=noise[:-1])


def test_out_resolution_returns_skip_image():
    G = tiny_generator(32)
    ws = G.mapping(torch.randn(2, G.z_dim), None)
    with torch.no_grad():
        full = G.synthesis(ws, noise_mode="const")
        same = G.synthesis(ws, noise_mode="const", out_resolution=32)
        low = G.synthesis(ws, noise_mode="const", out_resolution=16)
    torch.testing.assert_close(full, same)
    assert low.shape == (2, 3, 16, 16)
    # The low-resolution skip image is what the last block upsamples: the final image minus the
    # last ToRGB contribution. Check it correlates with the downsampled full image.
    down = torch.nn.functional.avg_pool2d(full, 2)
    corr = torch.corrcoef(torch.stack([low.flatten(), down.flatten()]))[0, 1]
    assert corr > 0.5


def test_truncation():
    G = tiny_generator(32)
    z = torch.randn(4, G.z_dim)
    ws = G.mapping(z, None)
    avg = G.mapping(z, None, truncation_psi=0.0)
    torch.testing.assert_close(avg, G.mapping.w_avg.expand_as(avg))
    cut = G.mapping(z, None, truncation_psi=0.0, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, 2:], ws[:, 2:])
    torch.testing.assert_close(cut[:, :2], avg[:, :2])


def test_w_avg_tracks_only_in_training():
    G = tiny_generator(32)
    before = G.mapping.w_avg.clone()
    G.mapping(torch.randn(4, G.z_dim), None)
    assert torch.equal(G.mapping.w_avg, before)
    G.train()
    G.mapping(torch.randn(4, G.z_dim), None, skip_w_avg_update=True)
    assert torch.equal(G.mapping.w_avg, before)
    G.mapping(torch.randn(4, G.z_dim), None)
    assert not torch.equal(G.mapping.w_avg, before)


def test_every_parameter_receives_a_gradient():
    G = tiny_generator(32).train().requires_grad_(True)
    D = tiny_discriminator(32).train().requires_grad_(True)
    img = G(torch.randn(4, G.z_dim), None, noise_mode="random")
    loss = torch.nn.functional.softplus(-D(img, None)).mean()
    loss.backward()
    for name, p in list(G.named_parameters()) + [("D." + n, p) for n, p in D.named_parameters()]:
        assert p.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{name} has a zero/NaN gradient"


def test_gradient_wrt_wplus_in_eval_mode():
    G = tiny_generator(32)
    ws = G.mapping(torch.randn(2, G.z_dim), None).detach().requires_grad_(True)
    G.synthesis(ws, noise_mode="const").square().mean().backward()
    assert ws.grad is not None and (ws.grad.abs().sum(dim=2) > 0).all()  # every layer's w matters


def test_conditional_networks():
    G = tiny_generator(32, c_dim=5)
    D = tiny_discriminator(32, c_dim=5)
    c = torch.nn.functional.one_hot(torch.tensor([0, 3]), 5).float()
    img = G(torch.randn(2, G.z_dim), c, noise_mode="const")
    assert img.shape == (2, 3, 32, 32)
    assert D(img, c).shape == (2, 1)
    with pytest.raises(ValueError, match="c must be"):
        G(torch.randn(2, G.z_dim), None)


def test_freeze_d_layers_become_buffers():
    D = tiny_discriminator(32, block_kwargs={"freeze_layers": 4})
    params = dict(D.named_parameters())
    buffers = dict(D.named_buffers())
    for name in ("b32.fromrgb.weight", "b32.conv0.weight", "b32.conv1.weight", "b32.skip.weight"):
        assert name in buffers and name not in params
    assert "b16.conv0.weight" in params
    # Frozen or not, the state_dict keys are identical.
    assert set(D.state_dict()) == set(tiny_discriminator(32).state_dict())


def test_minibatch_std_group_divisibility():
    D = tiny_discriminator(32)
    assert D(torch.randn(4, 3, 32, 32)).shape == (4, 1)
    with pytest.raises(ValueError, match="divisible"):
        D(torch.randn(3, 3, 32, 32))
    with pytest.raises(ValueError, match="D expects images"):
        D(torch.randn(2, 3, 16, 16))


def test_fast_and_reference_paths_agree_in_value_and_gradient():
    G = tiny_generator(32)
    ws0 = G.mapping(torch.randn(2, G.z_dim), None).detach()
    noise0 = [torch.randn(1, 1, layer.resolution, layer.resolution) for layer in G.synthesis.noise_layers()]
    results = []
    for impl, fused in (("fast", False), ("ref", False), ("fast", True), ("ref", True)):
        ws = ws0.clone().requires_grad_(True)
        noise = [n.clone().requires_grad_(True) for n in noise0]
        img = G.synthesis(ws, noise=noise, impl=impl, fused_modconv=fused)
        img.square().mean().backward()
        results.append((img.detach(), ws.grad, [n.grad for n in noise]))
    for img, gw, gn in results[1:]:
        torch.testing.assert_close(img, results[0][0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(gw, results[0][1], atol=1e-6, rtol=1e-3)
        for a, b in zip(gn, results[0][2], strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-3)
