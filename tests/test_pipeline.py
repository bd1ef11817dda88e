"""The main job on tiny generators: detection → alignment → inversion → transfer → paste-back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from realface.checkpoints import load_generator
from realface.face import MaskConfig
from realface.invert import InvertConfig
from realface.nn.lpips import load_lpips_vgg
from realface.pipeline import ApplyConfig, RealFace, SaveOptions, load_latent, transfer
from tests._helpers import random_vgg16_file
from tests.conftest import data_file

# Colours of the replicant fixture's segmentation (tests/data/FIXTURES.md).
CLOTHES = (135, 198, 199)
BACKGROUND = (0, 0, 0)


@pytest.fixture(scope="module")
def lpips(tmp_path_factory):
    return load_lpips_vgg(vgg_path=random_vgg16_file(tmp_path_factory.mktemp("vgg") / "vgg16.pth"))


@pytest.fixture(scope="module")
def generators():
    pkl = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    # Two generators sharing one W+ space: G (as "real") and G_ema (as "rendering").
    return load_generator(pkl, which="G", cache=False), load_generator(pkl, which="G_ema", cache=False)


def _config(**kw):
    base = dict(invert=InvertConfig(steps=3, w_avg_samples=500), mask=MaskConfig(kind="landmarks"))
    base.update(kw)
    return ApplyConfig(**base)


def garment_and_background(mask_path):
    seg = np.asarray(Image.open(mask_path).convert("RGB")).astype(
        int
    )  # lossy at the edges: allow ±6 in total
    near = lambda c: np.abs(seg - np.array(c)).sum(axis=2) <= 6  # noqa: E731
    return near(CLOTHES) | near(BACKGROUND)  # [H, W] bool


def test_apply_changes_the_face_and_nothing_else(tmp_path, generators, lpips):
    G_real, G_rend = generators
    src = data_file("images", "replicant_face_00000.jpg")
    before = src.read_bytes()
    rf = RealFace(G_real, G_rend, lpips, _config(save=SaveOptions(True, True, True, True, True)))
    written = rf.run_file(src, tmp_path / "out.png")
    assert src.read_bytes() == before
    out = np.asarray(Image.open(tmp_path / "out.png"))
    original = np.asarray(Image.open(src).convert("RGB"))
    assert out.shape == original.shape
    keep = garment_and_background(data_file("images", "replicant_face_00000_mask.png"))
    assert keep.sum() > 200_000  # the check covers most of the 640x640 image
    assert np.array_equal(out[keep], original[keep]), "garment/background pixels changed"
    changed = np.any(out != original, axis=2)
    assert changed.sum() > 500, "the face was not replaced"
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "out.png",
            "out_face0_aligned.png",
            "out_face0_reconstruction.png",
            "out_face0_realistic.png",
            "out_face0_latent.safetensors",
            "out_face0_sheet.png",
        ]
    )
    ws, noise = load_latent(tmp_path / "out_face0_latent.safetensors")
    assert ws.shape == (1, G_rend.num_ws, G_rend.w_dim) and len(noise) == len(G_rend.synthesis.noise_layers())
    # The realistic face is G_real's decoding of the latent (with G_real's constant noise).
    realistic = np.asarray(Image.open(tmp_path / "out_face0_realistic.png")).astype(np.float32) / 255
    expect = ((transfer(G_real, ws).clamp(-1, 1) + 1) / 2)[0].permute(1, 2, 0).numpy()
    assert np.abs(realistic - expect).max() <= 1 / 255 + 1e-6


def test_output_keeps_input_format_and_refuses_to_overwrite_input(tmp_path, generators, lpips):
    G_real, G_rend = generators
    src = tmp_path / "avatar.jpg"
    src.write_bytes(data_file("images", "replicant_face_00000.jpg").read_bytes())
    rf = RealFace(G_real, G_rend, lpips, _config())
    rf.run_file(src, tmp_path / "result.jpg")
    assert Image.open(tmp_path / "result.jpg").format == "JPEG"
    with pytest.raises(Exception, match="overwrite the input"):
        rf.run_file(src, src)


def test_transfer_layers(generators):
    G_real, _ = generators
    from realface.invert import w_stats

    ws = G_real.mapping(torch.randn(2, G_real.z_dim), None)
    all_avg = transfer(G_real, ws, layers=[], stats_samples=500)
    avg = w_stats(G_real, 500).w_avg.reshape(1, 1, -1).expand_as(ws)
    with torch.no_grad():
        torch.testing.assert_close(all_avg, G_real.synthesis(avg, noise_mode="const"))
    torch.testing.assert_close(
        transfer(G_real, ws, layers=None), transfer(G_real, ws, layers=range(G_real.num_ws))
    )
    with pytest.raises(Exception, match="out of range"):
        transfer(G_real, ws, layers=[99])


def test_generators_must_share_w_space(generators, lpips):
    from tests._helpers import tiny_generator

    with pytest.raises(Exception, match="share the W\\+ space"):
        RealFace(generators[0], tiny_generator(32), lpips)


def test_no_face_is_a_clear_error(tmp_path, generators, lpips):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (120, 120, 120)).save(blank)
    rf = RealFace(*generators, lpips, _config())
    with pytest.raises(Exception, match="blank.png"):
        rf.run_file(blank, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


def test_baseline_mode_inverts_into_g_real_with_sketch_and_colour_losses(tmp_path, generators, lpips, caplog):
    G_real, _ = generators
    src = data_file("images", "replicant_face_00000.jpg")
    with caplog.at_level("WARNING"):
        rf = RealFace(G_real, None, lpips, _config(save=SaveOptions(latents=True)))
    assert rf.baseline and "baseline mode" in caplog.text
    loss = rf.inversion_loss()
    target = torch.rand(1, 3, 64, 64) * 2 - 1
    prepared = loss.prepare(target)
    assert float(loss(target, prepared)) == pytest.approx(0.0, abs=1e-6)  # zero at the target itself
    assert float(loss(torch.zeros_like(target), prepared)) > 0
    written = rf.run_file(src, tmp_path / "out.png")
    from safetensors import safe_open

    latent = next(p for p in written if p.name.endswith("_latent.safetensors"))
    with safe_open(str(latent), framework="pt") as f:
        assert f.metadata()["mode"] == "baseline"
    out = np.asarray(Image.open(tmp_path / "out.png"))
    original = np.asarray(Image.open(src).convert("RGB"))
    keep = garment_and_background(data_file("images", "replicant_face_00000_mask.png"))
    assert np.array_equal(out[keep], original[keep]) and not np.array_equal(out, original)


def test_baseline_loss_is_the_configured_identity_loss(generators, lpips):
    from realface.errors import ConfigError
    from realface.losses import IdentityLossConfig, color_loss, sketch_loss
    from realface.nn.sketch import XDoGSketch

    G_real, _ = generators
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    images = (target + 0.4 * torch.randn(target.shape, generator=g)).clamp(-1, 1)
    S = XDoGSketch()
    sketch, color = (
        sketch_loss(images, target, S, 512, "sum"),
        color_loss(images, target, lpips, 256, 13, 10.0),
    )

    loss = RealFace(G_real, None, lpips, _config()).inversion_loss()  # the paper's weights by default
    torch.testing.assert_close(loss(images, loss.prepare(target)), 5e-6 * sketch + 3.75e3 * color)
    only_color = ApplyConfig(baseline_loss=IdentityLossConfig(sketch_weight=0.0, color_weight=2.0))
    loss = RealFace(G_real, None, lpips, only_color).inversion_loss()
    torch.testing.assert_close(loss(images, loss.prepare(target)), 2.0 * color)
    # Scaled to the 64 px images: sigma 10 * 64 / 256 = 2.5, 5 taps; lambda_s * (512 / 64)**2 = 3.2e-4.
    scaled = ApplyConfig(baseline_loss=IdentityLossConfig(scale_to_resolution=True))
    loss = RealFace(G_real, None, lpips, scaled).inversion_loss()
    expected = 3.2e-4 * sketch + 3.75e3 * color_loss(images, target, lpips, 256, 5, 2.5)
    torch.testing.assert_close(loss(images, loss.prepare(target)), expected)
    off = ApplyConfig(baseline_loss=IdentityLossConfig(sketch_weight=0.0, color_weight=0.0))
    with pytest.raises(ConfigError, match="sketch_weight or color_weight > 0"):
        RealFace(G_real, None, lpips, off).inversion_loss()


def test_invert_faces_in_several_batches_joins_the_parts(generators, lpips):
    G_real, G_rend = generators
    g = torch.Generator().manual_seed(1)
    aligned = torch.rand(3, 64, 64, 3, generator=g).numpy()  # [F, R, R, 3] in [0, 1]
    whole = RealFace(G_real, G_rend, lpips, _config(batch_size=3)).invert_faces(aligned)
    parts = RealFace(G_real, G_rend, lpips, _config(batch_size=2)).invert_faces(aligned)  # 2 + 1 faces
    assert parts.ws.shape == whole.ws.shape == (3, G_rend.num_ws, G_rend.w_dim)
    assert parts.noise is not None and whole.noise is not None and len(parts.noise) == len(whole.noise)
    for a, b in zip(parts.noise, whole.noise, strict=True):
        assert a.shape == b.shape and a.shape[0] == 3
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(parts.ws, whole.ws, atol=1e-4, rtol=1e-4)  # per-face seeds: same result
    assert parts.loss_history.shape == whole.loss_history.shape and parts.final_loss.shape == (3,)
