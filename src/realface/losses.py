"""The paper's identity losses (Wang et al., CAVW 2024, §3.2): sketch and colour terms that tie
``G_rendering(w+)`` to ``G_real(w+)`` while ``G_rendering`` is fine-tuned, also usable as extra terms
of a baseline inversion.

    ``L_sketch = ‖S(a↓512) − S(b↓512)‖₁``                 (S: a sketch extractor, lines dark on white)
    ``L_color  = LPIPS_vgg(B(a↓256), B(b↓256))``            (B: Gaussian blur, kernel 13, σ = 10)
    ``L_G = L_origin + λs · L_sketch + λc · L_color``,   λs = 5e-6, λc = 3.75e3

``↓s`` is area downsampling to ``s`` px when the image is larger (:func:`realface.nn.resize.area_downsample`).
All functions take RGB images ``[N, 3, H, W]`` in [-1, 1] (generator outputs) and return one value per
sample, ``[N]``; reduce over the batch yourself (``.mean()`` as the StyleGAN2-ADA loss does). They
are differentiable in both images; the networks they use are not trained by them.

The paper does not say how the L1 norm is reduced. λs = 5e-6 points to a sum over the 512 × 512
pixels (with a mean, at most 1 per sample, the weighted term would be at most 5e-6, negligible next
to the adversarial loss), so the default is ``reduction="sum"``. The paper's S is the DeepFaceEditing sketch generator; realface's
default, ``"xdog"``, is a weight-free substitute (see :mod:`realface.nn.sketch`), so the paper's λs
is a starting point rather than a calibrated weight for it.

:class:`IdentityLossConfig` is the one place where λs, λc and the terms' settings live, and
:func:`identity_loss` the one function that evaluates them: fine-tuning (:mod:`realface.train.loss`),
the baseline-mode inversion (:class:`realface.invert.IdentityLoss`) and the toy-world benchmark all
call it. Importing this module does not import torch (the command line takes its defaults from the
config); the functions import it when called.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from realface.errors import ConfigError

if TYPE_CHECKING:  # torch is imported by the functions: the config alone needs no torch
    import torch
    from torch import nn

    from realface.nn.lpips import LPIPS

__all__ = [
    "IdentityLossConfig",
    "build_sketch_for",
    "IdentityLossTerms",
    "sketch_loss",
    "color_loss",
    "identity_loss",
]

Reduction = Literal["sum", "mean"]


def _check_pair(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    if a.ndim != 4 or a.shape[1] != 3:
        raise ValueError(f"{name}: expected RGB images [N, 3, H, W], got shape {tuple(a.shape)}")
    if a.shape != b.shape:
        raise ValueError(
            f"{name}: both images must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def sketch_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    extractor: nn.Module,
    size: int = 512,
    reduction: Reduction = "sum",
) -> torch.Tensor:
    """Sketch identity loss ``‖S(a↓size) − S(b↓size)‖₁`` per sample.

    Args:
        a, b: RGB images ``[N, 3, H, W]`` in [-1, 1] (in training: ``G_real(w+)`` and ``G_rendering(w+)``).
        extractor: a sketch extractor honouring the contract of :mod:`realface.nn.sketch`
            (``[N, 3, h, w]`` in [-1, 1] → ``[N, 1, h, w]`` in [0, 1]).
        size: images larger than this are area-downsampled to it first (paper: 512).
        reduction: ``"sum"`` (default, as λs = 5e-6 implies) sums ``|ΔS|`` over the pixels of each
            sample; ``"mean"`` averages it.

    Returns:
        ``[N]``, zero when ``a == b``.
    """
    import torch

    from realface.nn.resize import area_downsample

    _check_pair(a, b, "sketch_loss")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"sketch_loss: reduction must be 'sum' or 'mean', got {reduction!r}")
    n = a.shape[0]
    both = area_downsample(torch.cat([a, b]), size)  # [2N, 3, h, w]
    s = extractor(both)  # [2N, 1, h, w]
    if tuple(s.shape) != (2 * n, 1, *both.shape[-2:]):
        raise ValueError(
            f"sketch_loss: the extractor should return [{2 * n}, 1, {both.shape[-2]}, {both.shape[-1]}], "
            f"got {tuple(s.shape)}"
        )
    diff = (s[:n] - s[n:]).abs().flatten(1)  # [N, h*w]
    return diff.sum(dim=1) if reduction == "sum" else diff.mean(dim=1)  # [N]


def color_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    lpips: LPIPS,
    size: int = 256,
    kernel_size: int = 13,
    sigma: float = 10.0,
) -> torch.Tensor:
    """Colour identity loss ``LPIPS_vgg(B(a↓size), B(b↓size))`` per sample.

    Args:
        a, b: RGB images ``[N, 3, H, W]`` in [-1, 1].
        lpips: an LPIPS-VGG network (:func:`realface.nn.lpips.load_lpips_vgg`).
        size: images larger than this are area-downsampled to it first (paper: 256).
        kernel_size, sigma: the Gaussian blur B (paper: 13, 10.0; reflect padding, see
            :mod:`realface.nn.blur`), applied after downsampling.

    Returns:
        ``[N]``, zero when ``a == b``.
    """
    import torch

    from realface.nn.blur import gaussian_blur
    from realface.nn.resize import area_downsample

    _check_pair(a, b, "color_loss")
    n = a.shape[0]
    both = area_downsample(torch.cat([a, b]), size)  # [2N, 3, h, w]
    both = gaussian_blur(both, kernel_size, sigma)  # [2N, 3, h, w]
    return lpips(both[:n], both[n:])  # [N]


@dataclass(frozen=True)
class IdentityLossConfig:
    """Weights and settings of the identity losses; defaults are the paper's.

    Wang et al. (CAVW 2024): ``L_G = L_origin + λs·L_sketch + λc·L_color`` with λs = 5e-6 and
    λc = 3.75e3; the sketch term compares images downsampled to 512 px, the colour term images
    downsampled to 256 px and blurred with a 13-tap Gaussian of σ = 10. Training
    (:class:`realface.train.loop.TrainConfig`), the baseline mode of ``realface apply``
    (:class:`realface.pipeline.ApplyConfig`) and the toy-world benchmark all hold one of these.

    Attributes:
        sketch_weight: λs (5e-6); 0 disables the term.
        color_weight: λc (3.75e3); 0 disables the term.
        sketch_size: resolution of the sketch comparison (512).
        color_size: resolution of the colour comparison (256).
        blur_kernel: taps of the blur B, odd (13).
        blur_sigma: σ of the blur B in pixels (10.0).
        sketch_reduction: ``"sum"`` over pixels (what λs implies) or ``"mean"``.
        sketch_extractor: name in :data:`realface.nn.sketch.SKETCH_EXTRACTORS` (``"xdog"``; the paper
            used the DeepFaceEditing network, to be registered as ``"dfe"``).
        scale_to_resolution: off (default): the settings above are used as they are, whatever the
            image size. On: images smaller than the paper's comparison sizes get settings scaled to
            their size (see :meth:`at_resolution`): the blur's σ and taps shrink with the colour
            resolution and λs grows with the inverse pixel count of the sketch resolution, so that a
            32 px toy world weighs the terms as a 512 / 256 px face would.
    """

    sketch_weight: float = 5e-6
    color_weight: float = 3.75e3
    sketch_size: int = 512
    color_size: int = 256
    blur_kernel: int = 13
    blur_sigma: float = 10.0
    sketch_reduction: Reduction = "sum"
    sketch_extractor: str = "xdog"
    scale_to_resolution: bool = False

    def __post_init__(self) -> None:
        from realface.options import check_finite

        check_finite(self)
        for name in ("sketch_weight", "color_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}", field=name)
        for name in ("sketch_size", "color_size"):
            if getattr(self, name) < 16:
                raise ConfigError(f"{name} must be at least 16 px, got {getattr(self, name)}", field=name)
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise ConfigError(
                f"blur_kernel must be a positive odd integer, got {self.blur_kernel}", field="blur_kernel"
            )
        if not self.blur_sigma > 0:
            raise ConfigError(f"blur_sigma must be positive, got {self.blur_sigma}", field="blur_sigma")
        if self.sketch_reduction not in ("sum", "mean"):
            raise ConfigError(
                f"sketch_reduction must be 'sum' or 'mean', got {self.sketch_reduction!r}",
                field="sketch_reduction",
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IdentityLossConfig:
        """The config of a saved ``dataclasses.asdict`` dict (unknown keys are refused)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown identity loss setting {unknown[0]!r}", field=unknown[0])
        return cls(**dict(data))

    @property
    def enabled(self) -> bool:
        """Whether either term has a non-zero weight."""
        return self.sketch_weight > 0 or self.color_weight > 0

    def at_resolution(self, resolution: int) -> IdentityLossConfig:
        """The settings :func:`identity_loss` uses on images of ``resolution`` px.

        Unchanged unless :attr:`scale_to_resolution` is on. Then, with ``rc = min(resolution,
        color_size)`` and ``rs = min(resolution, sketch_size)`` (the sizes the terms compare at):

        - ``blur_sigma`` becomes ``blur_sigma · rc / color_size`` (10 · res / 256 by default);
        - the blur's half-width ``(blur_kernel − 1) / 2`` scales the same way, rounded half up, at
          least 1: ``blur_kernel = 2 · max(1, ⌊half · rc / color_size + ½⌋) + 1``;
        - with ``sketch_reduction="sum"``, ``sketch_weight`` becomes ``sketch_weight ·
          (sketch_size / rs)²``: the sketch term is a sum over ``rs²`` pixels, so λs keeps its weight
          per pixel of a ``sketch_size`` image (``"mean"`` needs no scaling).

        The result has ``scale_to_resolution`` off (its settings are final).
        """
        if not self.scale_to_resolution:
            return self
        if resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution}")
        rc = min(resolution, self.color_size)
        rs = min(resolution, self.sketch_size)
        factor = rc / self.color_size
        half = max(1, math.floor((self.blur_kernel - 1) / 2 * factor + 0.5))
        sketch_weight = self.sketch_weight
        if self.sketch_reduction == "sum":
            sketch_weight = sketch_weight * (self.sketch_size / rs) ** 2
        return dataclasses.replace(
            self,
            sketch_weight=sketch_weight,
            blur_sigma=self.blur_sigma * factor,
            blur_kernel=2 * half + 1,
            scale_to_resolution=False,
        )


def build_sketch_for(config: IdentityLossConfig) -> nn.Module | None:
    """The sketch extractor named by ``config.sketch_extractor``, or None when the term is off."""
    if not config.sketch_weight > 0:
        return None
    from realface.nn.sketch import build_sketch_extractor

    return build_sketch_extractor(config.sketch_extractor)


class IdentityLossTerms(NamedTuple):
    """Per-sample terms of :func:`identity_loss`, each ``[N]``; ``total = λs·sketch + λc·color``."""

    sketch: torch.Tensor
    color: torch.Tensor
    total: torch.Tensor


def identity_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    config: IdentityLossConfig,
    *,
    extractor: nn.Module | None,
    lpips: LPIPS | None,
) -> IdentityLossTerms:
    """The weighted identity terms ``λs·L_sketch + λc·L_color`` of the paper, per sample.

    Args:
        a, b: RGB images ``[N, 3, H, W]`` in [-1, 1] (``G_real(w+)`` and ``G_rendering(w+)``).
        config: weights and settings; with ``config.scale_to_resolution`` on, those of
            :meth:`IdentityLossConfig.at_resolution` at the images' width.
        extractor: the sketch extractor (built from ``config.sketch_extractor``); may be ``None``
            only when ``config.sketch_weight == 0``.
        lpips: the LPIPS-VGG network; may be ``None`` only when ``config.color_weight == 0``.

    Returns:
        :class:`IdentityLossTerms`; a disabled term is a tensor of zeros and costs nothing.
    """
    _check_pair(a, b, "identity_loss")
    config = config.at_resolution(a.shape[-1])
    zeros = a.new_zeros(a.shape[0])  # [N]
    sketch = zeros
    color = zeros
    if config.sketch_weight > 0:
        if extractor is None:
            raise ConfigError("identity_loss: sketch_weight > 0 needs a sketch extractor, got None")
        sketch = sketch_loss(a, b, extractor, config.sketch_size, config.sketch_reduction)  # [N]
    if config.color_weight > 0:
        if lpips is None:
            raise ConfigError("identity_loss: color_weight > 0 needs an LPIPS network, got None")
        color = color_loss(a, b, lpips, config.color_size, config.blur_kernel, config.blur_sigma)  # [N]
    total = config.sketch_weight * sketch + config.color_weight * color  # [N]
    return IdentityLossTerms(sketch=sketch, color=color, total=total)
