"""Gaussian blur against scipy.ndimage (independent implementation) and torchvision; gradients; errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from scipy import ndimage

from realface.nn.blur import GaussianBlur, gaussian_blur, gaussian_kernel1d

_SCIPY_MODE = {"reflect": "mirror", "replicate": "nearest"}  # scipy's names for the same borders


@pytest.mark.parametrize("padding", ["reflect", "replicate"])
@pytest.mark.parametrize("kernel_size,sigma", [(13, 10.0), (5, 1.0), (7, 2.5)])
def test_matches_scipy_gaussian_filter(padding, kernel_size, sigma):
    rng = np.random.default_rng(kernel_size)
    x = rng.standard_normal((2, 3, 20, 17))
    radius = kernel_size // 2
    expected = ndimage.gaussian_filter(
        x, sigma=(0, 0, sigma, sigma), truncate=radius / sigma, mode=_SCIPY_MODE[padding]
    )
    out = gaussian_blur(torch.from_numpy(x), kernel_size, sigma, padding=padding)
    assert out.shape == x.shape and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)


def test_matches_an_explicit_2d_kernel_in_float32():
    x = torch.rand(1, 2, 16, 16)
    g = np.exp(-0.5 * (np.arange(-6, 7) / 10.0) ** 2)
    k2 = np.outer(g, g) / np.outer(g, g).sum()  # [13, 13]
    expected = np.stack([ndimage.correlate(c, k2, mode="mirror") for c in x[0].double().numpy()])
    np.testing.assert_allclose(gaussian_blur(x)[0].numpy(), expected, rtol=0, atol=1e-6)


def test_matches_torchvision_gaussian_blur():
    x = torch.rand(2, 3, 24, 24)
    expected = TF.gaussian_blur(x, kernel_size=[13, 13], sigma=[10.0, 10.0])
    torch.testing.assert_close(gaussian_blur(x, 13, 10.0), expected, rtol=0, atol=1e-6)


def test_kernel_normalised_and_symmetric():
    g = gaussian_kernel1d(13, 10.0, dtype=torch.float64)
    assert g.shape == (13,)
    assert abs(g.sum().item() - 1.0) < 1e-12
    torch.testing.assert_close(g, g.flip(0))
    assert g[6] == g.max() and abs(g[0].item() / g[6].item() - np.exp(-0.18)) < 1e-12


def test_constant_image_unchanged_and_module_equals_function():
    x = torch.full((1, 3, 10, 12), 0.37)
    for padding in ("reflect", "replicate"):
        torch.testing.assert_close(gaussian_blur(x, padding=padding), x)
    y = torch.rand(2, 1, 16, 16)
    assert torch.equal(GaussianBlur(7, 2.0, "replicate")(y), gaussian_blur(y, 7, 2.0, "replicate"))


def test_gradcheck():
    x = torch.rand(1, 2, 9, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gaussian_blur(t, 5, 1.5), (x,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: gaussian_blur(t, 5, 1.5, "replicate"), (x,), fast_mode=True)


def test_errors_say_expected_and_got():
    with pytest.raises(ValueError, match="odd.*got 4"):
        gaussian_blur(torch.rand(1, 1, 8, 8), kernel_size=4)
    with pytest.raises(ValueError, match="sigma.*got 0"):
        GaussianBlur(3, 0.0)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\].*\(8, 8\)"):
        gaussian_blur(torch.rand(8, 8))
    with pytest.raises(ValueError, match="needs H and W > 6, got 6x20"):
        gaussian_blur(torch.rand(1, 1, 6, 20))
    assert gaussian_blur(torch.rand(1, 1, 6, 20), padding="replicate").shape == (1, 1, 6, 20)
    with pytest.raises(ValueError, match="padding"):
        gaussian_blur(torch.rand(1, 1, 8, 8), padding="zeros")  # type: ignore[arg-type]
