"""Tests for realface.train.augment: the 'bgc' ADA pipeline and the adaptive strength controller.

Geometric transforms are checked on smooth images and Gaussian blobs (their moments show scale,
anisotropy, rotation and translation directly); colour transforms against their closed forms; the
draws against the official distributions; the buffers against the official pickle fixture."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from realface.checkpoints import read_official_pickle
from realface.errors import ConfigError
from realface.train.augment import (
    COLOR,
    GEOMETRIC,
    AdaConfig,
    AdaptiveP,
    AugmentConfig,
    AugmentParams,
    AugmentPipe,
    apply_color,
    apply_geometric,
    color_matrix,
    geometric_inverse,
    sample_params,
)
from tests.conftest import data_file

HZ = AugmentPipe().Hz_geom


def _smooth(n: int = 2, c: int = 3, h: int = 24, w: int = 24, seed: int = 0) -> torch.Tensor:
    """Band-limited random images [n, c, h, w]: noise through a 5-tap box filter (periodic)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    return F.avg_pool2d(F.pad(x, [2, 2, 2, 2], mode="circular"), 5, 1)  # [n, c, h, w]


def _coarse(n: int = 2, size: int = 24, seed: int = 0) -> torch.Tensor:
    """Images [n, 3, size, size] whose features are about size/6 pixels wide (bicubic 6x6 noise)."""
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.randn(n, 3, 6, 6, generator=g), size=size, mode="bicubic", align_corners=False)


def _blob(size: int = 32, cx: float = 0.0, cy: float = 0.0, sx: float = 2.5, sy: float = 2.5) -> torch.Tensor:
    """A Gaussian blob [1, 1, size, size] centred at (cx, cy) pixels from the image centre."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    y, x = r[:, None], r[None, :]
    return torch.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))[None, None]


def _moments(img: torch.Tensor) -> tuple[float, float, float, float]:
    """(mean x, mean y, var x, var y) of a non-negative image [1, 1, H, W], centred pixel coordinates."""
    a = img[0, 0].clamp_min(0)
    H, W = a.shape
    y = torch.arange(H, dtype=a.dtype)[:, None] - (H - 1) / 2
    x = torch.arange(W, dtype=a.dtype)[None, :] - (W - 1) / 2
    m = a.sum()
    mx, my = (a * x).sum() / m, (a * y).sum() / m
    return float(mx), float(my), float((a * (x - mx) ** 2).sum() / m), float((a * (y - my) ** 2).sum() / m)


def _geom(x: torch.Tensor, **fields: torch.Tensor) -> torch.Tensor:
    params = dataclasses.replace(AugmentParams.identity(x.shape[0]), **fields)
    return apply_geometric(x, geometric_inverse(params, x.shape[3], x.shape[2]), HZ)


def _color(x: torch.Tensor, **fields: torch.Tensor) -> torch.Tensor:
    params = dataclasses.replace(AugmentParams.identity(x.shape[0]), **fields)
    return apply_color(x, color_matrix(params))


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


# --------------------------------------------------------------------------------------------------
# The pipe as a whole


def test_p0_is_exactly_the_identity() -> None:
    x = torch.randn(4, 3, 16, 16)
    pipe = AugmentPipe()
    assert float(pipe.p) == 0
    assert torch.equal(pipe(x), x)
    assert torch.equal(AugmentPipe(p=0.0)(x[:, :1]), x[:, :1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 3, 16, 16), (2, 1, 16, 16), (2, 3, 12, 20)])
def test_shape_and_dtype_are_kept(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, dtype=dtype)
    y = AugmentPipe(p=1.0)(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y).all()
    assert not torch.equal(y, x)


def test_generator_makes_draws_reproducible() -> None:
    x = _smooth(4)
    pipe = AugmentPipe(p=0.5)
    a = pipe(x, generator=torch.Generator().manual_seed(3))
    b = pipe(x, generator=torch.Generator().manual_seed(3))
    c = pipe(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_input_checks_and_config_errors() -> None:
    pipe = AugmentPipe()
    with pytest.raises(ValueError, match=r"\[N, 1 \| 3, H, W\].*\(2, 4, 8, 8\)"):
        pipe(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="uint8"):
        pipe(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="xflip"):
        AugmentConfig(xflip=-1)
    with pytest.raises(ConfigError, match="cutout"):
        AugmentPipe(cutout=1)
    with pytest.raises(ConfigError, match="unknown"):
        AugmentConfig.only("noise")
    cfg = AugmentConfig.only("xflip", "hue", hue_max=0.5)
    assert cfg.xflip == 1 and cfg.hue == 1 and cfg.hue_max == 0.5 and cfg.rotate == 0
    assert AugmentPipe(rotate90=0).config == AugmentConfig(rotate90=0)


def test_each_augmentation_alone_changes_images() -> None:
    x = _smooth(16, h=16, w=16)
    for name in GEOMETRIC + COLOR:
        pipe = AugmentPipe(AugmentConfig.only(name), p=1.0)
        y = pipe(x, generator=torch.Generator().manual_seed(0))
        changed = (y - x).flatten(1).abs().amax(1) > 1e-3  # [N]
        assert changed.any(), name
        if name not in ("xflip", "rotate90", "lumaflip", "xint"):  # these may draw the identity
            assert changed.all(), name


# --------------------------------------------------------------------------------------------------
# Geometric transforms


def test_identity_resampling_reconstructs() -> None:
    x = torch.randn(2, 3, 16, 16)  # even white noise: the sym6 up/down pair is perfect reconstruction
    y = _geom(x, scale=torch.tensor([1.0, 1.0 + 1e-7]))  # forces the resampling path
    assert (y - x).abs().max() < 1e-4


def test_xflip_mirrors() -> None:
    x = _smooth()
    y = _geom(x, xflip=torch.ones(2))
    assert (y - x.flip(3)).abs().max() < 0.1 * x.abs().max()
    assert _corr(y, x.flip(3)) > 0.995 and _corr(y, x) < 0.5


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotate90_turns_counter_clockwise(k: int) -> None:
    x = _smooth()
    y = _geom(x, rotate90=torch.full([2], float(k)))
    assert _corr(y, torch.rot90(x, k, dims=(2, 3))) > 0.995


def test_xint_shifts_by_whole_pixels_exactly() -> None:
    x = torch.randn(2, 3, 16, 16)
    y = _geom(x, xint=torch.tensor([[2 / 16, 0.0], [0.0, -1 / 16]]))  # +2 px in x; -1 px in y
    assert (y[0, :, :, 2:] - x[0, :, :, :-2]).abs().max() < 1e-4
    assert (y[1, :, :-1, :] - x[1, :, 1:, :]).abs().max() < 1e-4
    assert (y[0, :, :, :2] - x[0, :, :, 1:3].flip(2)).abs().max() < 1e-4  # reflect padding


def test_scale_and_aniso_stretch_the_content() -> None:
    blob = _blob(size=48)  # small next to the image: reflect padding brings back no tails
    _, _, vx0, vy0 = _moments(blob)
    _, _, vx, vy = _moments(_geom(blob, scale=torch.tensor([1.5])))
    assert vx / vx0 == pytest.approx(1.5**2, rel=0.03) and vy / vy0 == pytest.approx(1.5**2, rel=0.03)
    _, _, vx, vy = _moments(_geom(blob, aniso=torch.tensor([1.4])))
    assert vx / vx0 == pytest.approx(1.4**2, rel=0.03) and vy / vy0 == pytest.approx(1.4**-2, rel=0.03)


@pytest.mark.parametrize("field", ["rotate_pre", "rotate_post"])
def test_rotation_turns_counter_clockwise(field: str) -> None:
    blob = _blob(cx=7.0, sx=2.0, sy=3.5)  # right of centre, tall
    mx, my, vx, vy = _moments(_geom(blob, **{field: torch.tensor([math.pi / 2])}))
    assert mx == pytest.approx(0.0, abs=0.1) and my == pytest.approx(-7.0, abs=0.1)  # moved to the top
    assert vx == pytest.approx(3.5**2, rel=0.05) and vy == pytest.approx(2.0**2, rel=0.05)  # now wide
    x = _coarse()
    assert 0.9 < _corr(_geom(x, **{field: torch.full([2], 0.1)}), x) < 0.999  # small angle: recognisable


def test_xfrac_shifts_by_fractions_of_the_size() -> None:
    blob = _blob()
    mx, my, vx, vy = _moments(_geom(blob, xfrac=torch.tensor([[0.1, -0.05]])))
    assert mx == pytest.approx(3.2, abs=0.05) and my == pytest.approx(-1.6, abs=0.05)
    assert vx == pytest.approx(2.5**2, rel=0.03)


def test_small_geometric_changes_keep_the_content() -> None:
    x = _coarse()
    for field, value in [("scale", 1.1), ("aniso", 1.1), ("rotate_pre", 0.1)]:
        y = _geom(x, **{field: torch.full([2], value)})
        assert 0.9 < _corr(y, x) < 0.999, field
    y = _geom(x, xfrac=torch.full([2, 2], 0.02))
    assert 0.9 < _corr(y, x) < 0.999


# --------------------------------------------------------------------------------------------------
# Colour transforms


def _luma(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=1, keepdim=True)  # [N, 1, H, W]


def test_brightness_and_contrast() -> None:
    x = torch.randn(2, 3, 8, 8)
    y = _color(x, brightness=torch.tensor([0.3, -0.2]))
    assert torch.allclose(y, x + torch.tensor([0.3, -0.2]).reshape(2, 1, 1, 1), atol=1e-6)
    y = _color(x, contrast=torch.tensor([2.0, 0.5]))
    assert torch.allclose(y, x * torch.tensor([2.0, 0.5]).reshape(2, 1, 1, 1), atol=1e-6)
    y = _color(x, brightness=torch.tensor([0.1, 0.1]), contrast=torch.tensor([2.0, 2.0]))
    assert torch.allclose(y, (x + 0.1) * 2, atol=1e-6)  # brightness first, then contrast


def test_lumaflip_negates_luma_and_keeps_chroma() -> None:
    x = torch.randn(2, 3, 8, 8)
    y = _color(x, lumaflip=torch.ones(2))
    assert torch.allclose(_luma(y), -_luma(x), atol=1e-6)
    assert torch.allclose(y - _luma(y), x - _luma(x), atol=1e-6)


def test_hue_rotates_about_the_grey_axis() -> None:
    x = torch.randn(2, 3, 8, 8)
    y = _color(x, hue=torch.full([2], 2 * math.pi / 3))
    assert torch.allclose(y, x[:, [2, 0, 1]], atol=1e-5)  # a third of a turn permutes R, G, B
    y = _color(x, hue=torch.tensor([0.7, -2.0]))
    assert torch.allclose(_luma(y), _luma(x), atol=1e-5)
    assert torch.allclose((y - _luma(y)).norm(dim=1), (x - _luma(x)).norm(dim=1), atol=1e-5)


def test_saturation_scales_chroma() -> None:
    x = torch.randn(2, 3, 8, 8)
    y = _color(x, saturation=torch.tensor([0.0, 3.0]))
    assert torch.allclose(_luma(y), _luma(x), atol=1e-5)
    assert torch.allclose(y[0], _luma(x)[0].expand(3, -1, -1), atol=1e-5)  # s = 0: grey
    assert torch.allclose(y[1] - _luma(y)[1], 3 * (x[1] - _luma(x)[1]), atol=1e-5)


def test_one_channel_images_use_the_mean_row() -> None:
    x = torch.randn(2, 1, 8, 8)
    y = _color(x, brightness=torch.tensor([0.5, 0.0]), lumaflip=torch.tensor([0.0, 1.0]))
    assert torch.allclose(y[0], x[0] + 0.5, atol=1e-6)
    assert torch.allclose(y[1], -x[1], atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Draws: the official distributions


def test_draws_follow_the_official_distributions() -> None:
    N, p = 40000, 0.3
    g = torch.Generator().manual_seed(0)
    d = sample_params(AugmentConfig(), p, N, generator=g)
    tol = 0.015

    def frac(mask: torch.Tensor) -> float:
        return float(mask.float().mean())

    assert frac(d.xflip == 1) == pytest.approx(p / 2, abs=tol)  # selected, then flipped half the time
    assert frac(d.rotate90 > 0) == pytest.approx(p * 3 / 4, abs=tol)
    assert frac(d.lumaflip == 1) == pytest.approx(p / 2, abs=tol)
    for name in ("scale", "aniso", "contrast", "saturation"):
        v = getattr(d, name)
        assert frac(v != 1) == pytest.approx(p, abs=tol), name
    for name in ("brightness", "hue"):
        assert frac(getattr(d, name) != 0) == pytest.approx(p, abs=tol), name
    assert frac((d.xint != 0).any(1)) == pytest.approx(p, abs=tol)
    assert frac((d.xfrac != 0).any(1)) == pytest.approx(p, abs=tol)
    rotated = (d.rotate_pre != 0) | (d.rotate_post != 0)
    assert frac(rotated) == pytest.approx(p, abs=tol)  # p_rot = 1 - sqrt(1 - p) for each of the two
    assert frac(d.rotate_pre != 0) == pytest.approx(1 - math.sqrt(1 - p), abs=tol)

    def std(v: torch.Tensor, default: float) -> float:
        return float(v[v != default].std())

    assert std(torch.log2(d.scale), 0) == pytest.approx(0.2, rel=0.05)
    assert std(torch.log2(d.aniso), 0) == pytest.approx(0.2, rel=0.05)
    assert std(torch.log2(d.contrast), 0) == pytest.approx(0.5, rel=0.05)
    assert std(torch.log2(d.saturation), 0) == pytest.approx(1.0, rel=0.05)
    assert std(d.brightness, 0) == pytest.approx(0.2, rel=0.05)
    assert std(d.xfrac.flatten(), 0) == pytest.approx(0.125, rel=0.05)
    assert (
        d.xint.abs().max() <= 0.125 and d.hue.abs().max() <= math.pi and d.rotate_pre.abs().max() <= math.pi
    )
    assert float(d.hue[d.hue != 0].abs().mean()) == pytest.approx(math.pi / 2, rel=0.05)  # uniform in ±π
    assert sorted(d.rotate90.unique().tolist()) == [0, 1, 2, 3]


def test_multiplier_scales_the_probability_and_zero_draws_nothing() -> None:
    cfg = AugmentConfig.only("brightness", "hue")
    d = sample_params(dataclasses.replace(cfg, brightness=0.5), 0.4, 20000, generator=torch.Generator())
    assert float((d.brightness != 0).float().mean()) == pytest.approx(0.2, abs=0.015)
    assert torch.equal(d.scale, torch.ones(20000)) and torch.equal(d.xflip, torch.zeros(20000))
    grey = sample_params(cfg, 1.0, 100, num_channels=1)
    assert torch.equal(grey.hue, torch.zeros(100))  # no hue for one-channel images, as the official


# --------------------------------------------------------------------------------------------------
# Gradients (R1 differentiates through the pipe twice)


def test_gradients_reach_the_input() -> None:
    x = _smooth(4, h=16, w=16).requires_grad_(True)
    y = AugmentPipe(p=1.0)(x, generator=torch.Generator().manual_seed(0))
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and (x.grad.abs().flatten(1).amax(1) > 0).all()


def test_gradcheck_and_second_derivatives() -> None:
    pipe = AugmentPipe(p=1.0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)

    def f(inp: torch.Tensor) -> torch.Tensor:
        return pipe(inp, generator=torch.Generator().manual_seed(5))

    assert not torch.equal(f(x), x)
    assert torch.autograd.gradcheck(f, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(f, (x,), fast_mode=True)


# --------------------------------------------------------------------------------------------------
# Official state dict


def test_official_state_dict_loads() -> None:
    state = read_official_pickle(data_file("stylegan2-ada", "sg2ada_tiny64.pkl"))["augment_pipe"]
    assert set(state) == {"p", "Hz_geom", "Hz_fbank"}
    pipe = AugmentPipe()
    assert torch.allclose(pipe.Hz_geom, state["Hz_geom"], rtol=0, atol=1e-7)  # sym6 / sum, 12 taps
    assert torch.allclose(pipe.Hz_fbank, state["Hz_fbank"], rtol=0, atol=1e-7)  # sym2 bank [4, 43]
    pipe.load_state_dict(state, strict=True)
    assert float(pipe.p) == pytest.approx(float(state["p"])) and float(pipe.p) > 0


def test_state_dict_names_and_shapes() -> None:
    sd = AugmentPipe().state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {"p": (), "Hz_geom": (12,), "Hz_fbank": (4, 43)}
    handmade = {"p": torch.tensor(0.25), "Hz_geom": torch.rand(12), "Hz_fbank": torch.rand(4, 43)}
    pipe = AugmentPipe()
    pipe.load_state_dict(handmade)
    assert float(pipe.p) == 0.25
    with pytest.raises(RuntimeError, match="Hz_geom"):
        pipe.load_state_dict({**handmade, "Hz_geom": torch.rand(8)})


# --------------------------------------------------------------------------------------------------
# Adaptive p


def test_adaptive_p_rises_with_the_exact_step() -> None:
    pipe = AugmentPipe()
    ada = AdaptiveP(pipe, batch_size=32, config=AdaConfig(target=0.6, interval=4, kimg=100))
    assert ada.adjustment == 32 * 4 / 100_000
    for it in range(1, 9):
        ada.accumulate(torch.full([32, 1], 2.0))  # mean sign 1 > 0.6
        updated = ada.step(it)
        assert updated == (it % 4 == 0)
        if it == 3:
            assert float(pipe.p) == 0
    assert float(pipe.p) == pytest.approx(2 * 0.00128, abs=1e-7)
    assert torch.equal(ada.stats, torch.zeros(2))


def test_adaptive_p_falls_and_clamps_at_zero() -> None:
    pipe = AugmentPipe(p=0.002)
    ada = AdaptiveP(pipe, batch_size=32)
    ada.accumulate(torch.tensor([[1.0], [-1.0], [-3.0], [0.5]]))  # mean sign 0 < 0.6
    ada.update()
    assert float(pipe.p) == pytest.approx(0.002 - 0.00128, abs=1e-7)
    ada.accumulate(-torch.ones(8, 1))
    ada.update()
    assert float(pipe.p) == 0.0
    ada.update()  # nothing accumulated: no change
    assert float(pipe.p) == 0.0


def test_adaptive_p_uses_every_logit_since_the_last_update() -> None:
    pipe = AugmentPipe(p=0.5)
    ada = AdaptiveP(pipe, batch_size=4, config=AdaConfig(interval=1, kimg=1))
    ada.accumulate(torch.tensor([1.0, 1.0, 1.0]))
    ada.accumulate(torch.tensor([1.0, -1.0]))  # 5 logits, mean sign 0.6 == target: no change
    ada.update()
    assert float(pipe.p) == 0.5
    ada.accumulate(torch.tensor([1.0, 1.0, -1.0]))  # mean 1/3 < 0.6
    ada.update()
    assert float(pipe.p) == pytest.approx(0.5 - 4 / 1000)


def test_adaptive_p_stats_are_all_reducible_and_resumable() -> None:
    pipe = AugmentPipe()
    ada = AdaptiveP(pipe, batch_size=8, config=AdaConfig(interval=2))
    ada.accumulate(torch.tensor([[1.0], [1.0]]))
    seen: list[torch.Tensor] = []

    def fake_all_reduce(t: torch.Tensor) -> None:  # another process saw mostly negative logits
        seen.append(t)
        t += torch.tensor([-4.0, 6.0])

    assert ada.step(1, all_reduce=fake_all_reduce) is False and not seen
    saved = ada.state_dict()
    resumed = AdaptiveP(pipe, batch_size=8, config=AdaConfig(interval=2))
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.stats, torch.tensor([2.0, 2.0]))
    assert resumed.step(2, all_reduce=fake_all_reduce) is True
    assert seen and seen[0] is resumed.stats  # the tensor itself is reduced in place
    assert float(pipe.p) == 0.0  # mean (2 - 4) / 8 < 0.6: p would fall, clamped at 0
    with pytest.raises(ConfigError, match="shape"):
        resumed.load_state_dict({"stats": torch.zeros(3)})
