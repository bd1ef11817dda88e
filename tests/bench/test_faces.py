"""The procedural face world: deterministic, shaped as promised, two genuinely different drawings."""

from __future__ import annotations

import math

import pytest
import torch

from realface.bench.faces import (
    IDENTITY_PARAMS,
    NUM_PARAMS,
    PARAM_NAMES,
    params_from_z,
    render,
    render_cg,
    render_photo,
    sample_params,
)
from realface.bench.transfer import rendering_style


def test_params_from_z_matches_the_mapping_normalisation():
    z = torch.randn(5, 32)
    p = params_from_z(z)
    assert p.shape == (5, NUM_PARAMS) and bool(((p > 0) & (p < 1)).all())
    # Scaling z does not change p: the mapping network's 2nd-moment normalisation removes it.
    assert torch.allclose(params_from_z(3.7 * z), p, atol=1e-6)
    # One hand-computed component: Phi(z0 / rms(z)).
    rms = float(z[0].square().mean().sqrt())
    expect = 0.5 * (1 + math.erf(float(z[0, 0]) / rms / math.sqrt(2)))
    assert abs(float(p[0, 0]) - expect) < 1e-6
    with pytest.raises(ValueError, match="z must be"):
        params_from_z(torch.randn(2, NUM_PARAMS - 1))


def test_renders_are_deterministic_in_range_and_differ_by_style():
    p = sample_params(4, 3)
    assert torch.equal(p, sample_params(4, 3)) and not torch.equal(p, sample_params(4, 4))
    a, b = render_photo(p, 32), render_photo(p, 32)
    c = render_cg(p, 32)
    assert a.shape == c.shape == (4, 3, 32, 32) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1 and c.min() >= -1 and c.max() <= 1
    assert (a - c).abs().mean() > 0.05  # a different drawing, not the same image
    assert torch.equal(render(p, "cg", 32), c)
    with pytest.raises(ValueError, match="unknown style"):
        render(p, "oil", 32)


@pytest.mark.parametrize("name", ["skin_light", "hair_light", "eye_spacing", "yaw", "bg_light"])
def test_every_kind_of_parameter_changes_the_image(name):
    p = torch.full([2, NUM_PARAMS], 0.5)
    p[0, PARAM_NAMES.index(name)] = 0.1
    p[1, PARAM_NAMES.index(name)] = 0.9
    for draw in (render_photo, render_cg):
        img = draw(p, 32)
        assert (img[0] - img[1]).abs().amax() > 0.1, (name, draw.__name__)


def test_identity_params_exclude_pose_light_and_background():
    names = {PARAM_NAMES[i] for i in IDENTITY_PARAMS}
    assert "skin_light" in names and "mouth_width" in names
    assert not names & {"yaw", "pitch", "light_azimuth", "light_elevation", "bg_hue", "bg_light"}


def test_pixel_filter_style_is_fixed_and_posterised():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    a, b = rendering_style(x), rendering_style(x)
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert (a - x).abs().mean() > 0.05
    assert len(torch.unique(((a + 1) / 2 * 255).round())) < 40
