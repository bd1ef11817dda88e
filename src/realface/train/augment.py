"""Adaptive discriminator augmentation (ADA): the official 'bgc' pipeline in pure PyTorch.

Reproduces ``training/augment.py`` of StyleGAN2-ADA (reference/stylegan2-ada.md §A4) for the
augmentations of the 'bgc' preset — **b**\\ lit, **g**\\ eometric, **c**\\ olour — with the same
parameter distributions, the same order of composition and the same resampling. Random draws are
not bit-equal to the official ones (no claim is made about matching its random stream).

**Probabilities.** Every augmentation is applied to each sample independently with probability
``multiplier · p`` (``p`` is the buffer adjusted by :class:`AdaptiveP`; multipliers are 1 in 'bgc').
The two arbitrary rotations each use ``p_rot = 1 - sqrt(1 - clamp(multiplier · p, 0, 1))`` so that
at least one of them happens with probability ``multiplier · p``.

**Geometric augmentations** build, per sample, the *inverse* matrix ``G_inv`` ([N, 3, 3], homogeneous)
that maps an output pixel to the input position it is read from. Coordinates are pixels with the
origin at the image centre, ``x`` to the right and ``y`` down. With the forward transforms listed in
the order they act on the image, ``G_inv = X⁻¹ · R90⁻¹ · T_int⁻¹ · S⁻¹ · R₁⁻¹ · A⁻¹ · R₂⁻¹ · T_frac⁻¹``:

==========  ==================================================================================
xflip       ``X = diag(1 - 2i, 1)``, ``i ∈ {0, 1}`` uniform (a selected sample is mirrored half the time)
rotate90    ``R90 = rot(-π/2 · i)``, ``i ∈ {0, 1, 2, 3}`` uniform (counter-clockwise on screen)
xint        ``T_int = translate(round(t_x W), round(t_y H))``, ``t ~ U(-xint_max, xint_max)²``
scale       ``S = diag(s, s)``, ``s = 2^(N(0, 1) · scale_std)``
rotate      ``R₁, R₂ = rot(-θ)``, ``θ ~ U(-π · rotate_max, π · rotate_max)``, before and after aniso
aniso       ``A = diag(s, 1/s)``, ``s = 2^(N(0, 1) · aniso_std)``
xfrac       ``T_frac = translate(t_x W, t_y H)``, ``t ~ N(0, xfrac_std²)²``
==========  ==================================================================================

where ``rot(θ) = [[cos θ, -sin θ], [sin θ, cos θ]]``. The batch is then resampled once
(:func:`apply_geometric`): reflect-pad by the margin that every sample's transformed corners need
(plus ``2 · len(Hz_geom) // 4`` pixels for the filters, at most ``size - 1``), upsample 2× with the
``sym6`` wavelet low-pass ``Hz_geom`` (12 taps, sum 1; true convolution, gain 4), sample with
bilinear ``grid_sample`` (zeros outside, ``align_corners=False``) on a grid that keeps
``len(Hz_geom) // 4`` pixels of margin, then filter with the time-reversed ``Hz_geom`` and take every
second pixel, cropping the margin. For the identity matrix this up/down pair reconstructs the image
(the filter is orthogonal), and so it does for integer translations. Mirroring and quarter turns
are close to exact but not bit-exact: ``sym6`` is only nearly symmetric, and a transform that
reverses an axis stops the phase of the up- and down-filters from cancelling (as in the official).

**Colour augmentations** build one matrix ``C`` ([N, 4, 4]) acting on ``(r, g, b, 1)`` with images in
[-1, 1] (so contrast and saturation pivot on mid-grey 0). With ``v = (1, 1, 1, 0)/√3`` (the luma
axis), ``C = Sat · Hue · Flip · Con · Bri``:

==========  ==================================================================================
brightness  ``Bri = translate(b, b, b)``, ``b ~ N(0, brightness_std²)``
contrast    ``Con = diag(c, c, c)``, ``c = 2^(N(0, 1) · contrast_std)``
lumaflip    ``Flip = I - 2 v vᵀ i``, ``i ∈ {0, 1}`` uniform (Householder reflection of the luma)
hue         ``Hue = rotation by θ about v``, ``θ ~ U(-π · hue_max, π · hue_max)``
saturation  ``Sat = v vᵀ + (I - v vᵀ) s``, ``s = 2^(N(0, 1) · saturation_std)``
==========  ==================================================================================

Hue and saturation are skipped for one-channel images; for those, the colour matrix is averaged
over its three rows, as the official code does.

**Differences from the official module**, all deliberate: when no sample of a batch draws a
geometric (colour) transform the resampling (matrix product) is skipped, so ``p = 0`` returns the
input unchanged (the official pipe resamples the whole batch whenever an augmentation is enabled,
which for the identity only changes float rounding); the 'imgfilter', 'noise' and 'cutout'
augmentations (not in 'bgc') are not implemented. The ``Hz_fbank`` buffer (the ``sym2`` filter
bank of 'imgfilter', [4, 43]) is kept so that the official ``augment_pipe`` state dict
(``p``, ``Hz_geom``, ``Hz_fbank``) loads with ``strict=True``; 'bgc' does not use it.

Everything is differentiable with respect to the images, twice (R1 takes the gradient of
``D(augment(x))`` with respect to ``x`` and backpropagates through it): ``tests/train/test_augment.py``
checks gradients and second derivatives numerically.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from realface.errors import ConfigError
from realface.nn.ops import upfirdn2d, upsample2d

__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "AugmentPipe",
    "AdaConfig",
    "AdaptiveP",
    "sample_params",
    "geometric_inverse",
    "color_matrix",
    "apply_geometric",
    "apply_color",
    "SYM2",
    "SYM6",
]

SYM2 = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)
"""Daubechies symlet-2 decomposition low-pass taps (used only to build ``Hz_fbank``)."""

SYM6 = (
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
)
"""Daubechies symlet-6 decomposition low-pass taps; ``Hz_geom`` is this divided by its sum (√2)."""

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")


@dataclass(frozen=True)
class AugmentConfig:
    """Multipliers (per-sample probability ``multiplier · p``) and strengths of the augmentations.

    Defaults are the official 'bgc' preset: every multiplier 1 and the official strengths
    (module docstring gives each formula). A multiplier of 0 disables an augmentation; nothing is
    drawn for it.
    """

    xflip: float = 1.0
    rotate90: float = 1.0
    xint: float = 1.0
    scale: float = 1.0
    rotate: float = 1.0
    aniso: float = 1.0
    xfrac: float = 1.0
    brightness: float = 1.0
    contrast: float = 1.0
    lumaflip: float = 1.0
    hue: float = 1.0
    saturation: float = 1.0
    xint_max: float = 0.125  # integer translation: fraction of the size
    scale_std: float = 0.2  # log2 scale
    rotate_max: float = 1.0  # angle range ±π·rotate_max (1: full circle)
    aniso_std: float = 0.2  # log2 anisotropy
    xfrac_std: float = 0.125  # fractional translation: fraction of the size
    brightness_std: float = 0.2  # in image units ([-1, 1] range)
    contrast_std: float = 0.5  # log2 contrast
    hue_max: float = 1.0  # angle range ±π·hue_max (1: full circle)
    saturation_std: float = 1.0  # log2 saturation

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"AugmentConfig.{f.name} must be a finite number >= 0; got {value!r}")

    @classmethod
    def only(cls, *names: str, **strengths: float) -> AugmentConfig:
        """A config with every multiplier 0 except ``names`` (1), e.g. ``only("xflip", "hue")``."""
        unknown = set(names) - set(GEOMETRIC + COLOR)
        if unknown:
            raise ConfigError(
                f"unknown augmentation(s) {sorted(unknown)}; expected some of {GEOMETRIC + COLOR}"
            )
        multipliers = {name: float(name in names) for name in GEOMETRIC + COLOR}
        return cls(**multipliers, **strengths)


@dataclass(frozen=True)
class AugmentParams:
    """One batch's draws, per sample; unselected samples hold the identity value (0 or 1).

    Angles in radians; translations as fractions of the image size.
    """

    xflip: torch.Tensor  # [N] in {0, 1}
    rotate90: torch.Tensor  # [N] in {0, 1, 2, 3}
    xint: torch.Tensor  # [N, 2] (x, y), before rounding to whole pixels
    scale: torch.Tensor  # [N]
    rotate_pre: torch.Tensor  # [N]
    aniso: torch.Tensor  # [N]
    rotate_post: torch.Tensor  # [N]
    xfrac: torch.Tensor  # [N, 2] (x, y)
    brightness: torch.Tensor  # [N]
    contrast: torch.Tensor  # [N]
    lumaflip: torch.Tensor  # [N] in {0, 1}
    hue: torch.Tensor  # [N]
    saturation: torch.Tensor  # [N]

    @classmethod
    def identity(cls, batch_size: int, device: torch.device | str = "cpu") -> AugmentParams:
        """Draws that change nothing; override fields with :func:`dataclasses.replace` to test one."""
        zeros = torch.zeros([batch_size], device=device)
        ones = torch.ones([batch_size], device=device)
        z2 = torch.zeros([batch_size, 2], device=device)
        return cls(zeros, zeros, z2, ones, zeros, ones, zeros, z2, zeros, ones, zeros, zeros, ones)


def sample_params(
    config: AugmentConfig,
    p: torch.Tensor | float,
    batch_size: int,
    num_channels: int = 3,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> AugmentParams:
    """Draw every augmentation's per-sample parameters (official distributions; module docstring).

    ``generator`` (optional) must live on ``device``. Hue and saturation are drawn only when
    ``num_channels > 1``.
    """
    N = batch_size
    p = torch.as_tensor(p, dtype=torch.float32, device=device)
    ident = AugmentParams.identity(N, device)
    cfg = config

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, device=device, generator=generator)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, device=device, generator=generator)

    def chosen(value: torch.Tensor, prob: torch.Tensor | float, default: torch.Tensor) -> torch.Tensor:
        keep = rand(N, *([1] * (value.ndim - 1))) < prob  # [N] or [N, 1]
        return torch.where(keep, value, default)

    out = {f.name: getattr(ident, f.name) for f in dataclasses.fields(ident)}
    if cfg.xflip > 0:
        out["xflip"] = chosen(torch.floor(rand(N) * 2), cfg.xflip * p, ident.xflip)
    if cfg.rotate90 > 0:
        out["rotate90"] = chosen(torch.floor(rand(N) * 4), cfg.rotate90 * p, ident.rotate90)
    if cfg.xint > 0:
        out["xint"] = chosen((rand(N, 2) * 2 - 1) * cfg.xint_max, cfg.xint * p, ident.xint)
    if cfg.scale > 0:
        out["scale"] = chosen(torch.exp2(randn(N) * cfg.scale_std), cfg.scale * p, ident.scale)
    p_rot = 1 - torch.sqrt((1 - cfg.rotate * p).clamp(0, 1))
    if cfg.rotate > 0:
        out["rotate_pre"] = chosen((rand(N) * 2 - 1) * math.pi * cfg.rotate_max, p_rot, ident.rotate_pre)
    if cfg.aniso > 0:
        out["aniso"] = chosen(torch.exp2(randn(N) * cfg.aniso_std), cfg.aniso * p, ident.aniso)
    if cfg.rotate > 0:
        out["rotate_post"] = chosen((rand(N) * 2 - 1) * math.pi * cfg.rotate_max, p_rot, ident.rotate_post)
    if cfg.xfrac > 0:
        out["xfrac"] = chosen(randn(N, 2) * cfg.xfrac_std, cfg.xfrac * p, ident.xfrac)
    if cfg.brightness > 0:
        out["brightness"] = chosen(randn(N) * cfg.brightness_std, cfg.brightness * p, ident.brightness)
    if cfg.contrast > 0:
        out["contrast"] = chosen(torch.exp2(randn(N) * cfg.contrast_std), cfg.contrast * p, ident.contrast)
    if cfg.lumaflip > 0:
        out["lumaflip"] = chosen(torch.floor(rand(N) * 2), cfg.lumaflip * p, ident.lumaflip)
    if cfg.hue > 0 and num_channels > 1:
        out["hue"] = chosen((rand(N) * 2 - 1) * math.pi * cfg.hue_max, cfg.hue * p, ident.hue)
    if cfg.saturation > 0 and num_channels > 1:
        out["saturation"] = chosen(
            torch.exp2(randn(N) * cfg.saturation_std), cfg.saturation * p, ident.saturation
        )
    return AugmentParams(**out)


# --------------------------------------------------------------------------------------------------
# Homogeneous matrices, one per sample. Arguments are [N] tensors or Python numbers.

_Entry = torch.Tensor | float


def _matrix(rows: list[list[_Entry]], device: torch.device) -> torch.Tensor:
    """Stack per-sample entries into [N, R, C] (numbers are broadcast over the batch)."""
    n = max((e.shape[0] for row in rows for e in row if isinstance(e, torch.Tensor)), default=1)
    out = torch.empty([n, len(rows), len(rows[0])], dtype=torch.float32, device=device)
    for r, row in enumerate(rows):
        for c, e in enumerate(row):
            out[:, r, c] = e
    return out  # [N, R, C]


def _translate2d(tx: _Entry, ty: _Entry, device: torch.device) -> torch.Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], device)


def _scale2d(sx: _Entry, sy: _Entry, device: torch.device) -> torch.Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], device)


def _rotate2d(theta: torch.Tensor, device: torch.device) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], device)


def _translate3d(tx: _Entry, ty: _Entry, tz: _Entry, device: torch.device) -> torch.Tensor:
    return _matrix([[1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1]], device)


def _scale3d(sx: _Entry, sy: _Entry, sz: _Entry, device: torch.device) -> torch.Tensor:
    return _matrix([[sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1]], device)


def _rotate3d(v: tuple[float, float, float], theta: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rotation by ``theta`` about the unit axis ``v`` (Rodrigues' formula), homogeneous [N, 4, 4]."""
    vx, vy, vz = v
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _matrix(
        [
            [vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
            [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
            [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
            [0, 0, 0, 1],
        ],
        device,
    )


def geometric_inverse(params: AugmentParams, width: int, height: int) -> torch.Tensor:
    """``G_inv`` [N, 3, 3]: output pixel → input pixel, centred pixel coordinates (module docstring)."""
    d = params.xflip.device
    G = _scale2d(1 / (1 - 2 * params.xflip), 1, d)  # X⁻¹ (its own inverse)
    G = G @ _rotate2d(math.pi / 2 * params.rotate90, d)  # R90⁻¹ = rot(+π/2 · i)
    G = G @ _translate2d(-torch.round(params.xint[:, 0] * width), -torch.round(params.xint[:, 1] * height), d)
    G = G @ _scale2d(1 / params.scale, 1 / params.scale, d)
    G = G @ _rotate2d(params.rotate_pre, d)  # R₁⁻¹ = rot(θ)
    G = G @ _scale2d(1 / params.aniso, params.aniso, d)
    G = G @ _rotate2d(params.rotate_post, d)
    G = G @ _translate2d(-params.xfrac[:, 0] * width, -params.xfrac[:, 1] * height, d)
    return G  # [N, 3, 3]


def color_matrix(params: AugmentParams) -> torch.Tensor:
    """``C`` [N, 4, 4] acting on ``(r, g, b, 1)`` (module docstring)."""
    d = params.brightness.device
    N = params.brightness.shape[0]
    b, c = params.brightness, params.contrast
    C = _translate3d(b, b, b, d)
    C = _scale3d(c, c, c, d) @ C
    v = torch.tensor([1.0, 1.0, 1.0, 0.0], device=d) / math.sqrt(3)  # [4] luma axis
    vvT = torch.outer(v, v)  # [4, 4]
    eye = torch.eye(4, device=d)
    C = (eye - 2 * vvT * params.lumaflip.reshape(N, 1, 1)) @ C
    C = _rotate3d((1 / math.sqrt(3),) * 3, params.hue, d) @ C
    C = (vvT + (eye - vvT) * params.saturation.reshape(N, 1, 1)) @ C
    return C  # [N, 4, 4]


def apply_geometric(images: torch.Tensor, G_inv: torch.Tensor, Hz_geom: torch.Tensor) -> torch.Tensor:
    """Resample ``images`` [N, C, H, W] through ``G_inv`` [N, 3, 3] as the official pipe does.

    Pad (reflect) → 2× upsample (``Hz_geom``) → bilinear ``grid_sample`` → filter with reversed
    ``Hz_geom`` and 2× downsample. Differentiable w.r.t. ``images`` (not ``G_inv``).
    """
    N, C, H, W = images.shape
    dev = images.device
    G_inv = G_inv.to(device=dev, dtype=torch.float32)
    pad = Hz_geom.shape[0] // 4  # filter margin in input pixels (3 for sym6)
    cx, cy = (W - 1) / 2, (H - 1) / 2

    # Margin that every sample's output corners reach in the input, plus the filters' support.
    corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device=dev)  # [4, 3]
    reach = (G_inv @ corners.T)[:, :2, :].permute(1, 0, 2).flatten(1)  # [2 (x, y), N*4]
    margin = torch.cat([-reach, reach]).amax(dim=1)  # [4] (x0, y0, x1, y1)
    margin = margin + torch.tensor([2 * pad - cx, 2 * pad - cy] * 2, device=dev)
    margin = margin.clamp_min(0).minimum(torch.tensor([W - 1, H - 1] * 2, device=dev, dtype=torch.float32))
    mx0, my0, mx1, my1 = (int(m) for m in margin.ceil().tolist())

    images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")  # [N, C, H+my0+my1, W+mx0+mx1]
    G_inv = _translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, dev) @ G_inv  # centre of the padded image

    images = upsample2d(images, Hz_geom, up=2)  # [N, C, 2Hp, 2Wp]
    G_inv = _scale2d(2, 2, dev) @ G_inv @ _scale2d(1 / 2, 1 / 2, dev)
    G_inv = _translate2d(-0.5, -0.5, dev) @ G_inv @ _translate2d(0.5, 0.5, dev)

    # Output grid: the 2× image plus `pad` input pixels on each side for the downsampling filter.
    shape = [N, C, (H + 2 * pad) * 2, (W + 2 * pad) * 2]
    to_norm = _scale2d(2 / images.shape[3], 2 / images.shape[2], dev)  # pixels → [-1, 1] of the input
    from_norm = _scale2d(shape[3] / 2, shape[2] / 2, dev)  # [-1, 1] of the output → pixels
    theta = (to_norm @ G_inv @ from_norm)[:, :2, :].to(images.dtype)  # [N, 2, 3]
    grid = F.affine_grid(theta, shape, align_corners=False)  # [N, 2H+4pad, 2W+4pad, 2]
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    k = Hz_geom.shape[0]
    crop0, crop1 = -2 * pad + (k - 1) // 2, -2 * pad + (k - 2) // 2
    images = upfirdn2d(images, Hz_geom, down=2, padding=[crop0, crop1, crop0, crop1], flip_filter=True)
    return images  # [N, C, H, W]


def apply_color(images: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Apply ``C`` [N, 4, 4] to ``images`` [N, 3 | 1, H, W] (one channel: rows averaged, official)."""
    N, ch, H, W = images.shape
    C = C.to(device=images.device, dtype=images.dtype)
    x = images.reshape(N, ch, H * W)  # [N, ch, HW]
    if ch == 3:
        x = C[:, :3, :3] @ x + C[:, :3, 3:]  # [N, 3, HW]
    elif ch == 1:
        C1 = C[:, :3, :].mean(dim=1, keepdim=True)  # [N, 1, 4]
        x = x * C1[:, :, :3].sum(dim=2, keepdim=True) + C1[:, :, 3:]  # [N, 1, HW]
    else:
        raise ValueError(f"colour augmentation expects 1 or 3 channels; got {ch}")
    return x.reshape(N, ch, H, W)


def _imgfilter_bank() -> torch.Tensor:
    """The official 'imgfilter' filter bank from ``sym2`` (4 bands × 43 taps); unused by 'bgc'.

    Row 0 starts as a unit impulse, the others as 0. Three times: zero-insert between taps (2×
    dilation), convolve every row with the half-band low-pass ``lo2 = lo ⊛ reverse(lo) / 2``, and add
    the high-pass ``hi2 = hi ⊛ reverse(hi) / 2`` (``hi[k] = (-1)^k lo[k]``) centred into row ``i``.
    """
    lo = np.asarray(SYM2)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.eye(4, 1)  # [4, 1]
    for i in range(1, 4):
        dilated = np.zeros([4, bank.shape[1] * 2 - 1])
        dilated[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo2) for row in dilated])  # [4, L]
        start = (bank.shape[1] - hi2.size) // 2
        bank[i, start : start + hi2.size] += hi2
    return torch.as_tensor(bank, dtype=torch.float32)  # [4, 43]


class AugmentPipe(torch.nn.Module):
    """The official AugmentPipe for the 'bgc' augmentations (module docstring for every formula).

    Build with an :class:`AugmentConfig` or its fields as keywords: ``AugmentPipe()`` is 'bgc',
    ``AugmentPipe(xflip=1, rotate90=0, ...)`` chooses. ``p`` is the initial strength (the official
    training loop sets it to 0 for ADA, or to ``--p`` for a fixed strength).

    Buffers (the official names and shapes, so the official ``augment_pipe`` state dict loads):
    ``p`` [] (strength), ``Hz_geom`` [12] (sym6 low-pass, sum 1), ``Hz_fbank`` [4, 43] ('imgfilter'
    bank, unused here).
    """

    p: torch.Tensor
    Hz_geom: torch.Tensor
    Hz_fbank: torch.Tensor

    def __init__(self, config: AugmentConfig | None = None, *, p: float = 0.0, **options: float) -> None:
        super().__init__()
        if config is not None and options:
            raise ConfigError("give AugmentPipe either an AugmentConfig or keyword options, not both")
        try:
            self.config = config if config is not None else AugmentConfig(**options)
        except TypeError as exc:
            raise ConfigError(f"AugmentPipe: {exc}") from None
        sym6 = torch.tensor(SYM6, dtype=torch.float64)
        self.register_buffer("p", torch.tensor(float(p), dtype=torch.float32))
        self.register_buffer("Hz_geom", (sym6 / sym6.sum()).to(torch.float32))
        self.register_buffer("Hz_fbank", _imgfilter_bank())

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment ``images`` [N, C, H, W] (float, C ∈ {1, 3}, nominal range [-1, 1]); same shape.

        ``generator`` (on the images' device) makes the draws reproducible; default: global RNG.
        """
        if images.ndim != 4 or images.shape[1] not in (1, 3) or not images.is_floating_point():
            raise ValueError(
                f"AugmentPipe expects float images [N, 1 | 3, H, W]; got {tuple(images.shape)} {images.dtype}"
            )
        N, C, H, W = images.shape
        params = sample_params(self.config, self.p, N, C, images.device, generator)
        G_inv = geometric_inverse(params, W, H)  # [N, 3, 3]
        if not torch.equal(G_inv, torch.eye(3, device=images.device).expand(N, 3, 3)):
            images = apply_geometric(images, G_inv, self.Hz_geom)
        Cm = color_matrix(params)  # [N, 4, 4]
        if not torch.equal(Cm, torch.eye(4, device=images.device).expand(N, 4, 4)):
            images = apply_color(images, Cm)
        return images  # [N, C, H, W]

    def extra_repr(self) -> str:
        on = [n for n in GEOMETRIC + COLOR if getattr(self.config, n) > 0]
        return f"p={float(self.p):.4f}, augmentations={on}"


# --------------------------------------------------------------------------------------------------
# The adaptive strength


@dataclass(frozen=True)
class AdaConfig:
    """The ADA heuristic's settings (official: target 0.6, interval 4, kimg 500; 100 when resuming).

    ``kimg``: thousands of images for ``p`` to move by 1. realface fine-tunes, so 100 is the default.
    """

    target: float = 0.6
    interval: int = 4
    kimg: float = 100.0

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ConfigError(f"AdaConfig.interval must be >= 1; got {self.interval}")
        if not self.kimg > 0:
            raise ConfigError(f"AdaConfig.kimg must be > 0; got {self.kimg}")


class AdaptiveP:
    """Adjusts ``pipe.p`` from the sign of D's outputs on real images (the official ADA heuristic).

    Call :meth:`accumulate` with D's logits on every real batch (the official loop reports them in
    the D main and R1 phases), then :meth:`step` once per training iteration with the number of
    iterations done. Every ``interval`` iterations::

        p ← max(0, p + sign(mean(sign(D(real))) - target) · batch_size · interval / (kimg · 1000))

    with the mean over every logit accumulated since the last update, and no upper limit on ``p``.
    ``batch_size`` is the *global* batch (all processes). With several processes the sums in
    :attr:`stats` must be summed over processes before the update: pass ``all_reduce`` (e.g.
    ``torch.distributed.all_reduce``, which sums in place) to :meth:`step`. Nothing here waits for the
    GPU: the update is tensor arithmetic on ``pipe.p``.
    """

    def __init__(self, pipe: AugmentPipe, batch_size: int, config: AdaConfig | None = None) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1; got {batch_size}")
        self.pipe, self.batch_size = pipe, batch_size
        self.config = config or AdaConfig()
        self.stats = torch.zeros([2], dtype=torch.float32, device=pipe.p.device)  # [sum of signs, count]

    @property
    def adjustment(self) -> float:
        """How far one update moves ``p``: ``batch_size · interval / (kimg · 1000)``."""
        return self.batch_size * self.config.interval / (self.config.kimg * 1000)

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Add ``sign(real_logits)`` (any shape, e.g. [N, 1]) to the running sums (no gradient)."""
        signs = real_logits.detach().sign().to(torch.float32)
        if self.stats.device != signs.device:
            self.stats = self.stats.to(signs.device)
        self.stats += torch.stack([signs.sum(), torch.tensor(float(signs.numel()), device=signs.device)])

    def update(self) -> torch.Tensor:
        """Move ``p`` once from the (already reduced) sums and reset them; returns the new ``p``.

        With no accumulated logits ``p`` is left as it is.
        """
        total, count = self.stats.to(self.pipe.p.device).unbind()
        mean = total / count.clamp_min(1)
        step = torch.sign(mean - self.config.target) * self.adjustment * (count > 0)
        with torch.no_grad():
            self.pipe.p.copy_((self.pipe.p + step).clamp_min(0))
        self.stats.zero_()
        return self.pipe.p

    def step(self, iterations_done: int, all_reduce: Callable[[torch.Tensor], object] | None = None) -> bool:
        """Update when ``iterations_done`` is a multiple of ``interval``; True when it updated."""
        if iterations_done % self.config.interval != 0:
            return False
        if all_reduce is not None:
            all_reduce(self.stats)
        self.update()
        return True

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The sums accumulated since the last update (``p`` itself is saved with the pipe)."""
        return {"stats": self.stats.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        stats = torch.as_tensor(state["stats"], dtype=torch.float32)
        if stats.shape != (2,):
            raise ConfigError(f"ADA state 'stats' must have shape [2]; got {tuple(stats.shape)}")
        self.stats = stats.to(self.stats.device).clone()
