"""XDoG sketch extractor: lines at edges, an independent numpy/scipy formulation, gradients, range,
determinism, and the extractor registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from realface.errors import ConfigError
from realface.nn import sketch
from realface.nn.sketch import (
    SKETCH_EXTRACTORS,
    XDoGSketch,
    build_sketch_extractor,
    register_sketch_extractor,
    xdog,
)

_S = 64
_R = 16.0


def _radius_map() -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(_S) + 0.5, torch.arange(_S) + 0.5, indexing="ij")
    return ((yy - _S / 2) ** 2 + (xx - _S / 2) ** 2).sqrt()  # [S, S]


def _disc(inside: float, outside: float) -> torch.Tensor:
    r = _radius_map()
    return torch.where(r < _R, inside, outside).expand(1, 3, _S, _S).clone()  # [1, 3, S, S]


@pytest.mark.parametrize("inside,outside", [(-0.6, 0.6), (0.6, -0.6), (0.1, 0.3)])
def test_lines_appear_on_the_boundary_of_a_disc(inside, outside):
    out = XDoGSketch()(_disc(inside, outside))[0, 0]  # [S, S]
    r = _radius_map()
    ring = out[(r - _R).abs() < 2.0]
    interior = out[r < _R - 5]
    exterior = out[r > _R + 5]
    assert ring.min() < 0.25, f"no dark line on the boundary (darkest {ring.min():.3f})"
    assert ring.mean() < interior.mean() - 0.05 and ring.mean() < exterior.mean() - 0.05
    assert interior.min() > 0.99 and exterior.min() > 0.99  # flat regions stay white


def _xdog_numpy(x: np.ndarray, sigma: float, k: float, tau: float, eps: float, phi: float) -> np.ndarray:
    """Independent formulation: scipy Gaussian filters (mirror borders, support ±ceil(3s))."""
    y = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2] + 1) / 2  # [N, H, W]

    def blur(img: np.ndarray, s: float) -> np.ndarray:
        radius = math.ceil(3 * s)
        return ndimage.gaussian_filter(img, sigma=(0, s, s), truncate=radius / s, mode="mirror")

    d = blur(y, sigma) - tau * blur(y, k * sigma)
    return np.where(d >= eps, 1.0, 1.0 + np.tanh(phi * (d - eps)))[:, None]  # [N, 1, H, W]


@pytest.mark.parametrize("params", [{}, {"sigma": 0.7, "k": 2.0, "tau": 0.95, "epsilon": -0.01, "phi": 50.0}])
def test_matches_independent_numpy_formulation(params):
    rng = np.random.default_rng(0)
    x = np.clip(rng.standard_normal((2, 3, 24, 20)) * 0.5, -1, 1)
    full = {"sigma": 1.0, "k": 1.6, "tau": 0.99, "epsilon": 0.0, "phi": 200.0} | params
    expected = _xdog_numpy(x, full["sigma"], full["k"], full["tau"], full["epsilon"], full["phi"])
    out = xdog(torch.from_numpy(x), **params)
    assert out.shape == (2, 1, 24, 20)
    assert (expected < 0.5).any() and (expected > 0.99).any()  # the image has both lines and paper
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-10)


def test_range_shape_dtype_and_constant_image():
    x = torch.rand(3, 3, 32, 40) * 2 - 1
    out = XDoGSketch()(x)
    assert out.shape == (3, 1, 32, 40) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    flat = XDoGSketch()(torch.full((1, 3, 16, 16), 0.25))
    assert torch.equal(flat, torch.ones(1, 1, 16, 16))


def test_gradients_flow():
    x = _disc(-0.5, 0.5).requires_grad_(True)
    out = XDoGSketch()(x)  # [1, 1, S, S]
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    r = _radius_map()
    assert x.grad[0, :, (r - _R).abs() < 3].abs().sum() > 0  # lines respond to the image
    # An input pixel whose whole 11 x 11 neighbourhood (the outer Gaussian's support) is paper white
    # influences no ink, so it receives no gradient.
    inked = (out < 1).float()  # [1, 1, S, S]
    near_ink = torch.nn.functional.max_pool2d(inked, 11, stride=1, padding=5)[0, 0] > 0  # [S, S]
    assert (~near_ink).sum() > 100
    assert x.grad[0, :, ~near_ink].abs().max() == 0

    x64 = (torch.rand(1, 3, 10, 10, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: xdog(t, sigma=0.7, phi=20.0), (x64,), fast_mode=True)


def test_deterministic_and_batch_independent():
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    S = build_sketch_extractor("xdog")
    a, b = S(x), S(x)
    assert torch.equal(a, b)
    torch.testing.assert_close(S(x[2:3]), a[2:3], rtol=0, atol=1e-4)  # phi amplifies rounding


def test_one_channel_input_is_luminance():
    x = torch.rand(1, 1, 24, 24) * 2 - 1
    torch.testing.assert_close(xdog(x), xdog(x.expand(1, 3, 24, 24)), rtol=0, atol=1e-4)


def test_registry_builds_by_name_and_is_ready_for_more(monkeypatch):
    assert SKETCH_EXTRACTORS["xdog"] is XDoGSketch
    S = build_sketch_extractor("xdog", sigma=2.0, phi=10.0)
    assert isinstance(S, XDoGSketch) and S.sigma == 2.0 and S.phi == 10.0 and not S.training

    with pytest.raises(ConfigError, match="unknown sketch extractor 'nope'; registered: dfe, xdog"):
        build_sketch_extractor("nope")

    monkeypatch.setattr(sketch, "SKETCH_EXTRACTORS", dict(SKETCH_EXTRACTORS))

    @register_sketch_extractor("inverted")
    class Inverted(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 1 - xdog(x)

    assert sketch.SKETCH_EXTRACTORS["inverted"] is Inverted
    assert isinstance(build_sketch_extractor("inverted"), Inverted)
    assert register_sketch_extractor("inverted")(Inverted) is Inverted  # re-registering the same is harmless
    with pytest.raises(ValueError, match="'xdog' is already registered"):
        register_sketch_extractor("xdog")(Inverted)


def test_errors_say_expected_and_got():
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\].*\(1, 2, 16, 16\)"):
        xdog(torch.zeros(1, 2, 16, 16))
    with pytest.raises(ValueError, match="k > 1.*k=1.0"):
        XDoGSketch(k=1.0)
    with pytest.raises(ValueError, match="sigma > 0.*sigma=0"):
        xdog(torch.zeros(1, 3, 16, 16), sigma=0)
