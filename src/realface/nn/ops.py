"""Numerical building blocks of StyleGAN2-ADA in pure PyTorch: FIR resampling, bias + activation,
resampling convolution and modulated convolution.

Every function reproduces the behaviour of the official StyleGAN2-ADA operators (``upfirdn2d``,
``bias_act``, ``conv2d_resample``, ``modulated_conv2d``; reference/stylegan2-ada.md §A3) and is
checked against outputs of the official implementation in ``tests/nn/test_stylegan2_official.py``.

Where a faster formulation exists it is selected with ``impl="fast"`` and the straightforward
formulation stays available as ``impl="ref"``; ``tests/nn/test_ops.py`` checks that both agree.
Nothing here is compiled; everything runs on any device PyTorch supports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, overload

import torch
import torch.nn.functional as F

__all__ = [
    "ACTIVATIONS",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
    "downsample2d",
    "bias_act",
    "scale_bias_act",
    "conv2d_resample",
    "modulated_conv2d",
    "normalize_2nd_moment",
]

# name -> (function, default gain). Gains keep the signal variance roughly constant (He init).
ACTIVATIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], float]] = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, math.sqrt(2)),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), math.sqrt(2)),
    "tanh": (torch.tanh, 1.0),
    "sigmoid": (torch.sigmoid, 1.0),
}


def setup_filter(f: Sequence[float] | torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Build a 2-D FIR filter from 1-D taps as their outer product, normalised to sum 1.

    ``[1, 3, 3, 1]`` gives the [4, 4] filter ``k_i * k_j / 64`` that every StyleGAN2 resampling
    layer stores as its ``resample_filter`` buffer.
    """
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1:
        f = f[:, None] * f[None, :]  # [k, k]
    if f.ndim != 2:
        raise ValueError(f"filter must be 1-D or 2-D, got shape {tuple(f.shape)}")
    if normalize:
        f = f / f.sum()
    return f


def _parse_padding(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) != 4:
        raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1]; got {padding!r}")
    return tuple(int(p) for p in padding)  # type: ignore[return-value]


def _pad_or_crop(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Zero-pad (positive) or crop (negative) the last two dims; pad is [x0, x1, y0, y1]."""
    x0, x1, y0, y1 = pad
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    H, W = x.shape[2], x.shape[3]
    return x[:, :, max(-y0, 0) : H - max(-y1, 0), max(-x0, 0) : W - max(-x1, 0)]


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with the FIR filter ``f``, then subsample.

    x: [N, C, H, W]. f: [kh, kw] (or None for the identity filter). padding: [x0, x1, y0, y1],
    applied after upsampling; negative values crop. The filter is scaled by ``gain ** (f.ndim / 2)``
    and applied as a true convolution (flipped) unless ``flip_filter``. Output size per axis:
    ``(in * up + pad0 + pad1 - k) // down + 1``. Same semantics as the official reference operator.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects x of shape [N, C, H, W], got {tuple(x.shape)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    N, C, H, W = x.shape
    pad = _parse_padding(padding)
    if up > 1:
        x = x.reshape(N, C, H, 1, W, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])  # [N, C, H, up, W, up]
        x = x.reshape(N, C, H * up, W * up)
    x0, x1, y0, y1 = pad
    conv_pad: tuple[int, int] = (0, 0)
    if f.ndim == 2 and x0 == x1 >= 0 and y0 == y1 >= 0:
        conv_pad = (y0, x0)  # symmetric zero padding: let the convolution do it (no padded copy)
    else:
        x = _pad_or_crop(x, pad)
    f = (f * (gain ** (f.ndim / 2))).to(dtype=x.dtype, device=x.device)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 1:  # separable: rows then columns
        x = F.conv2d(x, f[None, None, None, :].repeat(C, 1, 1, 1), groups=C)
        x = F.conv2d(x, f[None, None, :, None].repeat(C, 1, 1, 1), groups=C)
    else:
        x = F.conv2d(x, f[None, None].repeat(C, 1, 1, 1), padding=conv_pad, groups=C)  # depthwise [C,1,kh,kw]
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def _is_1331(f: torch.Tensor | None) -> bool:
    """True when f is the standard normalised [1,3,3,1] outer-product filter (the only one StyleGAN2 uses)."""
    if f is None or f.shape != (4, 4):
        return False
    ref = setup_filter([1, 3, 3, 1]).to(f.device, f.dtype)
    return bool(torch.allclose(f, ref, rtol=0, atol=1e-7))


def _upsample2d_1331_fast(x: torch.Tensor, gain: float) -> torch.Tensor:
    """2x upsampling with the [1,3,3,1] filter, padding [2,1,2,1], as a polyphase sum of shifted copies.

    Equals ``upfirdn2d(x, setup_filter([1,3,3,1]), up=2, padding=[2,1,2,1], gain=4 * gain)``: for
    each axis the output samples are ``out[2i] = (x[i-1] + 3 x[i]) / 4`` and
    ``out[2i+1] = (3 x[i] + x[i+1]) / 4`` with zeros outside the image. No depthwise convolution.
    """
    N, C, H, W = x.shape

    def up_axis(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim]
        pad = [0, 0] * (t.ndim - 1 - dim) + [1, 1]
        tp = F.pad(t, pad)  # zero border along dim
        prev = tp.narrow(dim, 0, n)
        nxt = tp.narrow(dim, 2, n)
        even = prev * 0.25 + t * 0.75
        odd = t * 0.75 + nxt * 0.25
        return torch.stack([even, odd], dim=dim + 1).flatten(dim, dim + 1)

    y = up_axis(up_axis(x, 2), 3)  # [N, C, 2H, 2W]
    if gain != 1:
        y = y * gain
    return y


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 2,
    padding: int | Sequence[int] = 0,
    gain: float = 1.0,
    impl: str = "fast",
) -> torch.Tensor:
    """Upsample by ``up`` with FIR filter ``f``, keeping the signal's mean (gain x up²). x: [N,C,H,W] -> [N,C,H*up,W*up].

    ``impl="fast"`` uses a polyphase formulation for the standard [1,3,3,1] filter at 2x with no
    extra padding, and falls back to the reference otherwise.
    """
    px0, px1, py0, py1 = _parse_padding(padding)
    kh, kw = (1, 1) if f is None else (f.shape[0], f.shape[-1])
    if impl == "fast" and up == 2 and (px0, px1, py0, py1) == (0, 0, 0, 0) and _is_1331(f):
        return _upsample2d_1331_fast(x, gain)
    pad = [px0 + (kw + up - 1) // 2, px1 + (kw - up) // 2, py0 + (kh + up - 1) // 2, py1 + (kh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=pad, gain=gain * up * up)


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    down: int = 2,
    padding: int | Sequence[int] = 0,
    gain: float = 1.0,
) -> torch.Tensor:
    """Downsample by ``down`` after FIR filtering with ``f``. x: [N,C,H,W] -> [N,C,H/down,W/down]."""
    px0, px1, py0, py1 = _parse_padding(padding)
    kh, kw = (1, 1) if f is None else (f.shape[0], f.shape[-1])
    pad = [
        px0 + (kw - down + 1) // 2,
        px1 + (kw - down) // 2,
        py0 + (kh - down + 1) // 2,
        py1 + (kh - down) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=pad, gain=gain)


_FUSED_ALPHA = {"linear": None, "lrelu": 0.2, "relu": 0.0}


def _bias_act_ref(
    x: torch.Tensor, b: torch.Tensor | None, dim: int, act: str, gain: float, clamp: float | None
) -> torch.Tensor:
    fn = ACTIVATIONS[act][0]
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = fn(x)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


class _FusedBiasAct(torch.autograd.Function):
    """bias + (leaky) ReLU / linear + gain + clamp with one output buffer and a backward from the output.

    For these activations the derivative is a function of the output's sign (gain > 0), so only
    ``y`` is saved, as in the official CUDA operator. The backward is written with ordinary
    differentiable ops, so higher-order gradients (R1, path-length regularisation) work.
    """

    @staticmethod
    def forward(ctx, x, b, dim, alpha, gain, clamp):  # type: ignore[override]
        y = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)]) if b is not None else x.clone()
        if alpha is not None:
            torch.nn.functional.leaky_relu_(y, alpha) if alpha > 0 else torch.relu_(y)
        if gain != 1:
            y.mul_(gain)
        if clamp is not None:
            y.clamp_(-clamp, clamp)
        ctx.save_for_backward(y)
        ctx.dim, ctx.alpha, ctx.gain, ctx.clamp, ctx.has_bias = dim, alpha, gain, clamp, b is not None
        return y

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        (y,) = ctx.saved_tensors
        if ctx.alpha is not None:
            slope = torch.where(y > 0, ctx.gain, ctx.gain * ctx.alpha).to(gy.dtype)
            gx = gy * slope
        else:
            gx = gy * ctx.gain if ctx.gain != 1 else gy
        if ctx.clamp is not None:
            gx = gx.masked_fill(y.abs() >= ctx.clamp, 0)
        gb = None
        if ctx.has_bias and ctx.needs_input_grad[1]:
            gb = gx.sum(dim=[i for i in range(gx.ndim) if i != ctx.dim])
        return gx, gb, None, None, None, None


class _ScaleBiasAct(torch.autograd.Function):
    """``clamp(act(x * d + noise + b))`` over [N, C, H, W] with one output buffer (see :func:`scale_bias_act`)."""

    @staticmethod
    def forward(ctx, x, d, noise, b, alpha, clamp):  # type: ignore[override]
        N, C = x.shape[:2]
        y = x * d.reshape(N, C, 1, 1)  # [NCHW]
        if noise is not None:
            y.add_(noise)
        if b is not None:
            y.add_(b.reshape(1, C, 1, 1))
        if alpha is not None:
            torch.nn.functional.leaky_relu_(y, alpha) if alpha > 0 else torch.relu_(y)
        clamped = False
        if clamp is not None:
            if y.device.type == "cuda":
                clamped = True
            else:  # skip the clamp (and the backward mask) when nothing is out of range: one read-only pass
                lo, hi = torch.aminmax(y)
                clamped = bool(lo < -clamp or hi > clamp)
            if clamped:
                y.clamp_(-clamp, clamp)
        ctx.save_for_backward(x, d, y)
        ctx.alpha, ctx.clamp, ctx.clamped = alpha, clamp, clamped
        ctx.noise_shape = None if noise is None else noise.shape
        ctx.has_bias = b is not None
        return y

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        x, d, y = ctx.saved_tensors
        N, C = x.shape[:2]
        if ctx.alpha is None:
            gz = gy
        elif ctx.alpha > 0:
            gz = torch.ops.aten.leaky_relu_backward(gy, y, ctx.alpha, True)
        else:
            gz = torch.ops.aten.threshold_backward(gy, y, 0)
        if ctx.clamped:
            gz = gz.masked_fill(y.abs() >= ctx.clamp, 0)
        gx = gd = gn = gb = None
        if ctx.needs_input_grad[0]:
            gx = gz * d.reshape(N, C, 1, 1)
        if ctx.needs_input_grad[1]:
            gd = torch.einsum("nchw,nchw->nc", gz, x)
        if ctx.noise_shape is not None and ctx.needs_input_grad[2]:
            gn = gz.sum(dim=1, keepdim=True)  # [N, 1, H, W]
            while gn.ndim > len(ctx.noise_shape):
                gn = gn.sum(0)
            dims = [
                i for i, (a, b) in enumerate(zip(gn.shape, ctx.noise_shape, strict=True)) if b == 1 and a != 1
            ]
            if dims:
                gn = gn.sum(dim=dims, keepdim=True)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            gb = gz.sum(dim=[0, 2, 3])
        return gx, gd, gn, gb, None, None


def scale_bias_act(
    x: torch.Tensor,
    d: torch.Tensor,
    noise: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    act: str = "lrelu",
    clamp: float | None = None,
    impl: str = "fast",
) -> torch.Tensor:
    """Epilogue of a modulated convolution: ``clamp(act(x * d + noise + b), -clamp, clamp)``.

    x: [N, C, H, W]; d: [N, C] per-sample channel scale (demodulation coefficients times the
    activation gain); noise: broadcastable to [N, 1, H, W]; b: [C]. The activation gain must be
    folded into d, noise and b by the caller (``act(z) * g == act(z * g)`` for g > 0 and these
    activations). ``impl="fast"`` fuses everything into one buffer and a hand-written backward that
    supports higher-order gradients; ``impl="ref"`` composes ordinary PyTorch ops.
    """
    if act not in _FUSED_ALPHA:
        raise ValueError(f"scale_bias_act supports {sorted(_FUSED_ALPHA)}, got {act!r}")
    if x.ndim != 4 or d.shape != x.shape[:2]:
        raise ValueError(f"expected x [N, C, H, W] and d [N, C]; got {tuple(x.shape)} and {tuple(d.shape)}")
    clamp = float(clamp) if clamp is not None and clamp >= 0 else None
    if impl == "fast":
        return _ScaleBiasAct.apply(x, d, noise, b, _FUSED_ALPHA[act], clamp)
    y = x * d.reshape(*d.shape, 1, 1)
    if noise is not None:
        y = y + noise
    return _bias_act_ref(y, b, 1, act, 1.0, clamp)


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
    impl: str = "fast",
) -> torch.Tensor:
    """``clamp(act(x + b) * gain, -clamp, clamp)``; b is broadcast along ``dim``.

    ``gain=None`` uses the activation's default gain (sqrt(2) for lrelu/relu, 1 for linear). The
    clamp is applied after the gain, as in the official operator. ``impl="fast"`` (linear, relu and
    lrelu) works in place on one buffer and differentiates from the output; ``impl="ref"`` is the
    plain composition of PyTorch ops.
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    gain = ACTIVATIONS[act][1] if gain is None else float(gain)
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[dim]):
        raise ValueError(f"bias of shape {tuple(b.shape)} does not match x.shape[{dim}] = {x.shape[dim]}")
    clamp = float(clamp) if clamp is not None and clamp >= 0 else None
    if impl == "fast" and act in _FUSED_ALPHA and gain > 0:
        return _FusedBiasAct.apply(x, b, dim, _FUSED_ALPHA[act], gain, clamp)
    if impl not in ("fast", "ref"):
        raise ValueError(f"impl must be 'fast' or 'ref', got {impl!r}")
    return _bias_act_ref(x, b, dim, act, gain, clamp)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale x to unit mean square along ``dim`` (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _conv(
    x: torch.Tensor,
    w: torch.Tensor,
    stride: int = 1,
    padding: int | Sequence[int] = 0,
    groups: int = 1,
    transpose: bool = False,
    flip_weight: bool = True,
) -> torch.Tensor:
    """conv2d (correlation when flip_weight, true convolution otherwise) or conv_transpose2d."""
    if not flip_weight:
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """2-D convolution with optional 2x up- or downsampling through the FIR filter ``f``.

    x: [N, groups*Cin, H, W]; w: [groups*Cout, Cin, kh, kw]. Reproduces the official
    ``conv2d_resample`` decomposition:
    - up: transposed convolution with stride ``up`` followed by an FIR filter (gain up²);
    - down: FIR filter followed by a strided convolution (1x1 kernels: FIR-subsample then 1x1 conv);
    - neither: a plain padded convolution.
    ``flip_weight=False`` means a true convolution (the official code uses it for up=2 layers).
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d_resample expects 4-D x and w, got {tuple(x.shape)} and {tuple(w.shape)}")
    if up > 1 and down > 1:
        raise NotImplementedError("simultaneous up- and downsampling is not used by StyleGAN2")
    out_ch, in_ch_per_group, kh, kw = w.shape
    fh, fw = (1, 1) if f is None else (f.shape[0], f.shape[-1])
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    if down > 1 and kw == 1 and kh == 1:
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        # conv_transpose2d wants [Cin_total, Cout_per_group, kh, kw].
        if groups == 1:
            wt = w.transpose(0, 1)
        else:
            wt = w.reshape(groups, out_ch // groups, in_ch_per_group, kh, kw).transpose(1, 2)
            wt = wt.reshape(groups * in_ch_per_group, out_ch // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(
            x, wt, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight
        )
        return upfirdn2d(
            x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up * up, flip_filter=flip_filter
        )
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1])
    return _conv(x, w, groups=groups, flip_weight=flip_weight)


@overload
def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
    defer_demod: Literal[False] = False,
) -> torch.Tensor: ...


@overload
def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
    *,
    defer_demod: Literal[True],
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]: ...


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
    defer_demod: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
    """StyleGAN2 modulated convolution (Karras et al. 2020, eq. 1-3).

    x: [N, I, H, W]; weight: [O, I, k, k]; styles: [N, I]; noise: broadcastable to [N, O, H', W'].
    Per sample the weight is scaled by the styles (``w' = W * s``) and, with ``demodulate``, by
    ``d = rsqrt(sum_{I,k,k} w'^2 + 1e-8)``. ``fused_modconv=True`` runs one grouped convolution over
    the batch (the official inference path); ``False`` scales activations before and after a shared
    convolution (the official training path). Both are mathematically equal. Noise is added after
    the convolution and demodulation, before bias and activation.

    ``defer_demod=True`` (non-fused only, no noise) returns ``(conv_output, dcoefs [N, O] or None)``
    without applying the demodulation, so that :func:`scale_bias_act` can apply it in its epilogue.
    """
    if defer_demod and (fused_modconv or noise is not None):
        raise ValueError("defer_demod needs fused_modconv=False and noise=None")
    N = x.shape[0]
    O, I, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != I:
        raise ValueError(f"x must be [N, {I}, H, W], got {tuple(x.shape)}")
    if styles.shape != (N, I):
        raise ValueError(f"styles must be [{N}, {I}], got {tuple(styles.shape)}")

    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise to keep float16 in range (as the official code does); cancels under demod.
        weight = weight * (
            1 / math.sqrt(I * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
        )
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    if kh == 1 and kw == 1 and up == 1 and down == 1 and padding == 0:
        # A 1x1 modulated convolution is a batched matrix product (much faster than a 1x1 conv on CPU).
        wm = weight.reshape(1, O, I) * styles.reshape(N, 1, I)  # [N, O, I]
        if demodulate:
            wm = wm * (wm.square().sum(dim=2, keepdim=True) + 1e-8).rsqrt()
        x = torch.bmm(wm.to(x.dtype), x.reshape(N, I, -1)).reshape(N, O, *x.shape[2:])  # [NOHW]
        return x + noise.to(x.dtype) if noise is not None else x

    w = None
    dcoefs = None
    if fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(N, 1, I, 1, 1)  # [NOIkk]
    if demodulate:
        # sum_{i,k} (W[o,i,k] s[n,i])^2 = sum_i s[n,i]^2 * sum_k W[o,i,k]^2: a matrix product, no [NOIkk] tensor.
        wsq = weight.square().sum(dim=[2, 3])  # [OI]
        dcoefs = (styles.square() @ wsq.t() + 1e-8).rsqrt()  # [NO]

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(N, I, 1, 1)  # [NIHW]
        x = conv2d_resample(
            x,
            weight.to(x.dtype),
            f=resample_filter,
            up=up,
            down=down,
            padding=padding,
            flip_weight=flip_weight,
        )  # [NOHW]
        if defer_demod:
            return x, dcoefs
        if demodulate:
            assert dcoefs is not None  # set above whenever demodulate
            x = x * dcoefs.to(x.dtype).reshape(N, O, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    assert w is not None  # fused_modconv holds from here on
    if demodulate:
        assert dcoefs is not None  # set above whenever demodulate
        w = w * dcoefs.reshape(N, O, 1, 1, 1)  # [NOIkk]
    x = x.reshape(1, N * I, *x.shape[2:])  # [1, N*I, H, W]
    w = w.reshape(N * O, I, kh, kw)  # [N*O, I, k, k]
    x = conv2d_resample(
        x,
        w.to(x.dtype),
        f=resample_filter,
        up=up,
        down=down,
        padding=padding,
        groups=N,
        flip_weight=flip_weight,
    )
    x = x.reshape(N, O, *x.shape[2:])  # [NOHW]
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x
