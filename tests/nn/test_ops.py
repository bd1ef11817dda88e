"""The pure-PyTorch operators against independent numpy formulations, and fast paths against references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from realface.nn import ops


def _upfirdn_numpy(x: np.ndarray, f: np.ndarray, up: int, down: int, pad: tuple, gain: float) -> np.ndarray:
    """Direct definition: zero-insert, pad/crop, true 2-D convolution, subsample (loops, no torch)."""
    N, C, H, W = x.shape
    u = np.zeros((N, C, H * up, W * up), x.dtype)
    u[:, :, ::up, ::up] = x
    x0, x1, y0, y1 = pad
    u = np.pad(u, ((0, 0), (0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
    u = u[:, :, max(-y0, 0) : u.shape[2] - max(-y1, 0), max(-x0, 0) : u.shape[3] - max(-x1, 0)]
    f = f * gain ** (f.ndim / 2)
    kh, kw = f.shape
    oh, ow = u.shape[2] - kh + 1, u.shape[3] - kw + 1
    out = np.zeros((N, C, oh, ow), np.float64)
    for i in range(kh):
        for j in range(kw):
            # true convolution: output(p) = sum_k u(p + k) * f(K-1-k)
            out += u[:, :, i : i + oh, j : j + ow] * f[kh - 1 - i, kw - 1 - j]
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize(
    "up,down,pad",
    [
        (1, 1, (0, 0, 0, 0)),
        (2, 1, (2, 1, 2, 1)),
        (1, 2, (1, 1, 1, 1)),
        (2, 1, (1, 1, 1, 1)),
        (1, 1, (-1, 2, 3, -2)),
    ],
)
def test_upfirdn2d_matches_direct_definition(up, down, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    f = rng.standard_normal((4, 3)).astype(np.float32)  # asymmetric: flipping matters
    got = ops.upfirdn2d(torch.from_numpy(x), torch.from_numpy(f), up=up, down=down, padding=pad, gain=1.7)
    want = _upfirdn_numpy(x, f, up, down, pad, 1.7)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_setup_filter():
    f = ops.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4)
    assert math.isclose(f.sum().item(), 1.0, rel_tol=1e-6)
    assert math.isclose(f[1, 1].item(), 9 / 64, rel_tol=1e-6)


@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_fast_upsample_equals_reference(gain):
    x = torch.randn(2, 5, 9, 7, dtype=torch.float64)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    fast = ops.upsample2d(x, f, gain=gain, impl="fast")
    ref = ops.upsample2d(x, f, gain=gain, impl="ref")
    assert fast.shape == (2, 5, 18, 14)
    torch.testing.assert_close(fast, ref, atol=1e-12, rtol=0)


def test_fast_upsample_gradcheck():
    x = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    assert torch.autograd.gradcheck(lambda t: ops.upsample2d(t, f, impl="fast"), (x,))


def test_bias_act_gain_clamp_and_errors():
    x = torch.tensor([[-2.0, 0.5, 300.0]])
    b = torch.tensor([1.0])
    y = ops.bias_act(x.t(), b, act="lrelu", clamp=256)  # x as [3, 1], bias along dim 1
    expected = torch.tensor([[-0.2 * math.sqrt(2)], [1.5 * math.sqrt(2)], [256.0]])
    torch.testing.assert_close(y, expected)
    with pytest.raises(ValueError, match="unknown activation"):
        ops.bias_act(x, act="swish")
    with pytest.raises(ValueError, match="does not match"):
        ops.bias_act(x, torch.zeros(2))


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_fused_equals_unfused(up, demodulate):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    w = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    s = torch.randn(3, 4, dtype=torch.float64)
    noise = torch.randn(3, 1, 6 * up, 6 * up, dtype=torch.float64)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    kw = dict(up=up, padding=1, resample_filter=f, demodulate=demodulate, flip_weight=(up == 1), noise=noise)
    a = ops.modulated_conv2d(x, w, s, fused_modconv=True, **kw)
    b = ops.modulated_conv2d(x, w, s, fused_modconv=False, **kw)
    assert a.shape == (3, 5, 6 * up, 6 * up)
    torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_modulated_conv_demodulation_normalises_weights():
    # With demodulation each output channel's effective weight has unit norm, so the output scale
    # does not depend on the style magnitude.
    torch.manual_seed(1)
    x = torch.randn(1, 4, 5, 5)
    w = torch.randn(2, 4, 3, 3)
    s = torch.rand(1, 4) + 0.5
    a = ops.modulated_conv2d(x, w, s, padding=1)
    b = ops.modulated_conv2d(x, w, s * 10, padding=1)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_modulated_conv_shape_errors():
    with pytest.raises(ValueError, match="styles must be"):
        ops.modulated_conv2d(torch.randn(2, 4, 5, 5), torch.randn(3, 4, 3, 3), torch.randn(2, 5))
    with pytest.raises(ValueError, match="x must be"):
        ops.modulated_conv2d(torch.randn(2, 3, 5, 5), torch.randn(3, 4, 3, 3), torch.randn(2, 4))


@pytest.mark.parametrize("act", ["lrelu", "relu", "linear"])
@pytest.mark.parametrize("noise_shape", [None, (1, 1, 5, 4), (2, 1, 5, 4)])
def test_scale_bias_act_fast_equals_reference_with_gradients(act, noise_shape):
    torch.manual_seed(3)
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    d = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    n = None if noise_shape is None else torch.randn(noise_shape, dtype=torch.float64, requires_grad=True)
    inputs = [t for t in (x, d, n, b) if t is not None]
    outs = []
    for impl in ("fast", "ref"):
        y = ops.scale_bias_act(x, d, n, b, act=act, clamp=1.5, impl=impl)
        grads = torch.autograd.grad(y.square().sum(), inputs)
        outs.append((y, grads))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    assert (outs[1][0].abs() == 1.5).any()  # the clamp is active in this test
    for ga, gb in zip(outs[0][1], outs[1][1], strict=True):
        torch.testing.assert_close(ga, gb)


def test_scale_bias_act_second_order_gradients():
    torch.manual_seed(4)
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    d = torch.randn(1, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    fn = lambda x, d, b: ops.scale_bias_act(x, d, None, b, act="lrelu", clamp=None)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, d, b))
    assert torch.autograd.gradgradcheck(fn, (x, d, b))


def test_fused_bias_act_equals_reference_and_is_twice_differentiable():
    torch.manual_seed(5)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    for act in ("lrelu", "linear", "relu"):
        fast = ops.bias_act(x, b, act=act, clamp=1.0, impl="fast")
        ref = ops.bias_act(x, b, act=act, clamp=1.0, impl="ref")
        torch.testing.assert_close(fast, ref)
    fn = lambda x, b: ops.bias_act(x, b, act="lrelu")  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x, b))
