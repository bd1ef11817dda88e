"""Identity losses on tiny tensors: zero for identical inputs, positive otherwise, gradients, shapes,
the order of downsampling and blurring, reductions, and the config."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from realface.errors import ConfigError
from realface.losses import IdentityLossConfig, color_loss, identity_loss, sketch_loss
from realface.nn.blur import gaussian_blur
from realface.nn.lpips import LPIPS
from realface.nn.sketch import XDoGSketch, build_sketch_extractor


@pytest.fixture(scope="module")
def lpips_net() -> LPIPS:
    torch.manual_seed(0)
    return LPIPS().eval().requires_grad_(False)  # random VGG, unit heads: enough for these properties


def _images(n: int = 2, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 3, size, size, generator=g) * 2 - 1  # [N, 3, S, S]
    b = (a + 0.3 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    return a, b


def _box_down(x: torch.Tensor, factor: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // factor, factor, w // factor, factor).mean(dim=(3, 5))


def test_sketch_loss_zero_positive_and_shape():
    a, b = _images()
    S = XDoGSketch()
    same = sketch_loss(a, a.clone(), S)
    diff = sketch_loss(a, b, S)
    assert same.shape == (2,) and diff.shape == (2,)
    assert torch.equal(same, torch.zeros(2))
    assert bool((diff > 0).all())


def test_sketch_loss_is_l1_of_sketches_of_downsampled_images():
    a, b = _images(size=64)
    S = XDoGSketch()
    expected = (S(_box_down(a, 2)) - S(_box_down(b, 2))).abs().sum(dim=(1, 2, 3))  # [N]
    got = sketch_loss(a, b, S, size=32, reduction="sum")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    mean = sketch_loss(a, b, S, size=32, reduction="mean")
    torch.testing.assert_close(mean * 32 * 32, got, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(got, sketch_loss(a, b, S, size=64))  # size matters


def test_color_loss_zero_positive_and_composition(lpips_net):
    a, b = _images(size=32)
    same = color_loss(a, a.clone(), lpips_net, size=16)
    assert torch.equal(same, torch.zeros(2))
    got = color_loss(a, b, lpips_net, size=16, kernel_size=5, sigma=2.0)
    assert got.shape == (2,) and bool((got > 0).all())
    # downsample first, then blur, then LPIPS
    expected = lpips_net(
        gaussian_blur(_box_down(a, 2), 5, 2.0), gaussian_blur(_box_down(b, 2), 5, 2.0)
    )  # [N]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    wrong_order = lpips_net(_box_down(gaussian_blur(a, 5, 2.0), 2), _box_down(gaussian_blur(b, 5, 2.0), 2))
    assert not torch.allclose(got, wrong_order, rtol=1e-3, atol=0)


def test_color_loss_ignores_detail_that_the_blur_removes(lpips_net):
    """Opposite-phase fine checkerboards differ strongly pixel-wise, yet blur to nearly the same image."""
    a = torch.zeros(1, 3, 32, 32)
    checker = (torch.arange(32).view(-1, 1) + torch.arange(32).view(1, -1)) % 2 * 0.4 - 0.2  # [32, 32]
    x, y = a + checker, a - checker
    blurred = color_loss(x, y, lpips_net, kernel_size=13, sigma=10.0)
    sharp = lpips_net(x, y)
    assert blurred.item() < 0.05 * sharp.item()


def test_gradients_flow_to_both_images(lpips_net):
    a, b = _images()
    a.requires_grad_(True)
    b.requires_grad_(True)
    (sketch_loss(a, b, XDoGSketch()).sum() + color_loss(a, b, lpips_net).sum()).backward()
    for t in (a, b):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_identity_loss_weights_the_terms(lpips_net):
    a, b = _images()
    cfg = IdentityLossConfig(sketch_size=32, color_size=16)
    S = build_sketch_extractor(cfg.sketch_extractor)
    terms = identity_loss(a, b, cfg, extractor=S, lpips=lpips_net)
    torch.testing.assert_close(terms.sketch, sketch_loss(a, b, S, 32, "sum"))
    torch.testing.assert_close(terms.color, color_loss(a, b, lpips_net, 16, 13, 10.0))
    torch.testing.assert_close(terms.total, 5e-6 * terms.sketch + 3.75e3 * terms.color)
    assert terms.total.shape == (2,)

    only_color = identity_loss(
        a, b, dataclasses.replace(cfg, sketch_weight=0.0), extractor=None, lpips=lpips_net
    )
    assert torch.equal(only_color.sketch, torch.zeros(2))
    torch.testing.assert_close(only_color.total, 3.75e3 * terms.color)
    with pytest.raises(ConfigError, match="needs an LPIPS network"):
        identity_loss(a, b, cfg, extractor=S, lpips=None)


def test_config_defaults_are_the_papers_and_validated():
    cfg = IdentityLossConfig()
    assert (cfg.sketch_weight, cfg.color_weight) == (5e-6, 3.75e3)
    assert (cfg.sketch_size, cfg.color_size, cfg.blur_kernel, cfg.blur_sigma) == (512, 256, 13, 10.0)
    assert cfg.sketch_reduction == "sum" and cfg.sketch_extractor == "xdog"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sketch_weight = 1.0  # type: ignore[misc]
    with pytest.raises(ConfigError, match="odd.*got 12"):
        IdentityLossConfig(blur_kernel=12)
    with pytest.raises(ConfigError, match="'max'"):
        IdentityLossConfig(sketch_reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="color_weight must be >= 0, got -1") as e:
        IdentityLossConfig(color_weight=-1.0)
    assert e.value.field == "color_weight"


def test_shape_errors_say_expected_and_got(lpips_net):
    a = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"same shape.*\(1, 3, 32, 32\).*\(2, 3, 32, 32\)"):
        sketch_loss(a, torch.zeros(2, 3, 32, 32), XDoGSketch())
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\].*\(1, 1, 32, 32\)"):
        color_loss(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32), lpips_net)
    with pytest.raises(ValueError, match="reduction.*'none'"):
        sketch_loss(a, a, XDoGSketch(), reduction="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"should return \[2, 1, 32, 32\], got \(2, 3, 32, 32\)"):
        sketch_loss(a, a, torch.nn.Identity())


def test_scaling_to_resolution_by_hand():
    cfg = IdentityLossConfig(scale_to_resolution=True)
    at32 = cfg.at_resolution(32)
    # Colour term at 32 px: sigma 10 * 32 / 256 = 1.25; half-width 6 * 32 / 256 = 0.75 -> 1 -> 3 taps.
    assert at32.blur_sigma == pytest.approx(1.25) and at32.blur_kernel == 3
    # Sketch term: a sum over 32 * 32 pixels instead of 512 * 512: lambda_s * 16**2 = 5e-6 * 256.
    assert at32.sketch_weight == pytest.approx(1.28e-3)
    assert at32.color_weight == 3.75e3 and not at32.scale_to_resolution
    at64 = cfg.at_resolution(64)  # sigma 2.5; half-width 1.5 rounds up to 2 -> 5 taps; (512/64)**2 = 64
    assert (at64.blur_sigma, at64.blur_kernel) == (pytest.approx(2.5), 5)
    assert at64.sketch_weight == pytest.approx(3.2e-4)
    at128 = cfg.at_resolution(128)  # sigma 5; half-width 3 -> 7 taps; (512/128)**2 = 16
    assert (at128.blur_sigma, at128.blur_kernel, at128.sketch_weight) == (5.0, 7, pytest.approx(8e-5))
    # At 256 px the colour term is the paper's; the sketch term still compares 256 px (x4).
    at256 = cfg.at_resolution(256)
    assert (at256.blur_sigma, at256.blur_kernel, at256.sketch_weight) == (10.0, 13, pytest.approx(2e-5))
    # Images at or above the paper's sizes are downsampled to them: nothing scales.
    at1024 = cfg.at_resolution(1024)
    assert (at1024.blur_sigma, at1024.blur_kernel, at1024.sketch_weight) == (10.0, 13, 5e-6)
    # A mean over pixels needs no rescaling of lambda_s.
    mean = IdentityLossConfig(scale_to_resolution=True, sketch_reduction="mean").at_resolution(32)
    assert mean.sketch_weight == 5e-6 and mean.blur_kernel == 3
    # Off (the default): the settings are used as they are at any size.
    assert IdentityLossConfig().at_resolution(32) == IdentityLossConfig()


def test_identity_loss_uses_the_scaled_settings(lpips_net):
    a, b = _images(size=32)
    S = XDoGSketch()
    terms = identity_loss(a, b, IdentityLossConfig(scale_to_resolution=True), extractor=S, lpips=lpips_net)
    torch.testing.assert_close(terms.sketch, sketch_loss(a, b, S, 512, "sum"))
    torch.testing.assert_close(terms.color, color_loss(a, b, lpips_net, 256, 3, 1.25))
    torch.testing.assert_close(terms.total, 1.28e-3 * terms.sketch + 3.75e3 * terms.color)
    plain = identity_loss(a, b, IdentityLossConfig(), extractor=S, lpips=lpips_net)
    assert not torch.allclose(plain.color, terms.color)  # sigma 10 / 13 taps on 32 px differ


def test_config_from_dict_round_trip_and_unknown_keys():
    cfg = IdentityLossConfig(sketch_weight=1e-5, blur_kernel=5, scale_to_resolution=True)
    assert IdentityLossConfig.from_dict(dataclasses.asdict(cfg)) == cfg
    assert IdentityLossConfig.from_dict({"color_weight": 10.0}) == IdentityLossConfig(color_weight=10.0)
    with pytest.raises(ConfigError, match="'lambda_s'") as e:
        IdentityLossConfig.from_dict({"lambda_s": 1.0})
    assert e.value.field == "lambda_s"
    with pytest.raises(ConfigError) as e:
        IdentityLossConfig.from_dict({"sketch_weight": -1.0})
    assert e.value.field == "sketch_weight"


def test_the_config_imports_without_torch():
    """The command line takes its defaults from the config: importing it must not load torch."""
    import subprocess
    import sys

    code = "import sys, realface.losses as m; m.IdentityLossConfig(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
