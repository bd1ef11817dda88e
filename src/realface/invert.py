"""GAN inversion: find W+ latents (and noise maps) that make a generator reproduce target images.

This is the projector of StyleGAN2-ADA (``projector.py``; reference/stylegan2-ada.md §A5) extended
as the paper's Sec. 3.3 needs it:

- **W+**: one latent per synthesis layer ([N, num_ws, w_dim]), initialised from ``w_avg``; the
  official projector optimises a single w broadcast to every layer (``InvertConfig(space="w")``).
- **Batches**: N targets are optimised together in one forward pass with independent losses (the
  loss is a sum over samples, so each sample's gradient is exactly its own). Every random draw is
  made per sample from its own seed, so a face's result does not depend on which batch it is in.
- **Noise**: the per-layer noise maps are optimised too, with the official multi-scale
  autocorrelation regulariser (weight 1e5) and per-step renormalisation to zero mean, unit variance.
- **Schedule**: the official learning-rate ramp-up/ramp-down and decaying latent noise.
- **Coarse-to-fine** (CPU speed-up): most steps compare the generator's skip-path image at a lower
  resolution (the high-resolution blocks are not evaluated at all), then a short refinement at full
  resolution.
- **Early stop** on a plateau and a per-step progress callback.

The loss is pluggable (:class:`TargetLoss`): LPIPS-VGG on images area-downsampled to 256 (the
official choice, :class:`LpipsLoss`), pixel MSE (:class:`PixelLoss`), the paper's identity losses
(:class:`IdentityLoss`, the baseline mode), or any weighted sum.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from realface.errors import ConfigError, ImageError
from realface.losses import IdentityLossConfig, build_sketch_for, identity_loss
from realface.nn.lpips import LPIPS
from realface.nn.resize import area_downsample
from realface.nn.stylegan2 import Generator
from realface.precision import PRECISIONS, resolve_precision

__all__ = [
    "InvertConfig",
    "InversionResult",
    "TargetLoss",
    "PixelLoss",
    "LpipsLoss",
    "WeightedLoss",
    "IdentityLoss",
    "WStats",
    "w_stats",
    "noise_regularization",
    "invert",
    "check_aligned_size",
]

log = logging.getLogger(__name__)

SPACES = ("w+", "w")  # InvertConfig.space: one w per synthesis layer, or one w broadcast to all


@dataclass(frozen=True)
class InvertConfig:
    """Options of the W+ projector. Defaults follow the official projector, with 500 steps (the paper).

    steps: optimisation steps in total (coarse + fine). lr: peak Adam learning rate (betas 0.9/0.999).
    lr_rampup / lr_rampdown: fractions of ``steps`` for the linear warm-up and cosine ramp-down.
    initial_noise_factor / noise_ramp: latent noise ``w_std * factor * max(0, 1 - t / ramp)^2``.
    noise_reg_weight: weight of the noise-map autocorrelation regulariser. optimize_noise: optimise
    the noise maps (else the generator's constant noise is used). w_avg_samples: mapped samples for
    ``w_avg``/``w_std``. loss_resolution: images larger than this are area-downsampled before the loss.
    coarse_to_fine / coarse_resolution / fine_steps: run ``steps - fine_steps`` steps on the skip image
    at ``coarse_resolution`` and the last ``fine_steps`` at full resolution. early_stop_patience /
    early_stop_tol: stop when no sample's best loss improved by more than ``tol`` (relative) for that
    many steps (None: never). seed: base seed of every random draw (per-sample seeds default to it).
    precision: ``"fp32"`` (the reference), ``"bf16"``: the generator and the loss run under bfloat16
    autocast (latents, noise, the optimiser and the loss sum stay float32; fast on CPUs with
    AVX512_BF16/AMX and on CUDA), or ``"auto"``: bf16 where the targets' device runs it natively, else
    fp32 (:func:`realface.precision.resolve_precision`). space: ``"w+"`` (one w per synthesis layer,
    the paper's choice) or ``"w"`` (one w per face broadcast to every layer, as the official
    projector does; the result's ``ws`` is still [N, num_ws, w_dim], every layer equal).
    """

    steps: int = 500
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    initial_noise_factor: float = 0.05
    noise_ramp: float = 0.75
    noise_reg_weight: float = 1e5
    optimize_noise: bool = True
    w_avg_samples: int = 10000
    loss_resolution: int = 256
    coarse_to_fine: bool = False
    coarse_resolution: int = 128
    fine_steps: int = 50
    early_stop_patience: int | None = None
    early_stop_tol: float = 1e-3
    seed: int = 303
    precision: str = "fp32"
    space: str = "w+"

    def __post_init__(self) -> None:
        from realface.options import check_finite

        check_finite(self)
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}", field="steps")
        if self.coarse_to_fine and not 0 <= self.fine_steps <= self.steps:
            raise ConfigError(
                f"fine_steps must be in [0, steps={self.steps}], got {self.fine_steps}", field="fine_steps"
            )
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}", field="lr")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be auto, fp32 or bf16, got {self.precision!r}", field="precision"
            )
        if self.space not in SPACES:
            raise ConfigError(f"space must be w+ or w, got {self.space!r}", field="space")


@dataclass
class InversionResult:
    """ws: [N, num_ws, w_dim]; noise: one [N, 1, R, R] map per layer of ``G.synthesis.noise_layers()``
    (None when noise was not optimised); loss_history: [steps_run, N] target loss (without the noise
    regulariser); steps_run: steps actually taken (fewer than asked after an early stop)."""

    ws: torch.Tensor
    noise: list[torch.Tensor] | None
    loss_history: torch.Tensor
    steps_run: int
    final_loss: torch.Tensor = field(default_factory=lambda: torch.empty(0))


class TargetLoss(Protocol):
    """A per-sample loss between generated images and fixed targets (both [N, 3, H, W] in [-1, 1])."""

    def prepare(self, target: torch.Tensor) -> Any:
        """Precompute what depends only on the targets (called once)."""

    def __call__(self, images: torch.Tensor, prepared: Any) -> torch.Tensor:
        """[N] loss per sample."""


class PixelLoss:
    """Mean squared error after area-downsampling both images to ``resolution``."""

    def __init__(self, resolution: int = 256) -> None:
        self.resolution = resolution

    def prepare(self, target: torch.Tensor) -> torch.Tensor:
        return area_downsample(target, self.resolution)

    def __call__(self, images: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        x = area_downsample(images, prepared.shape[-1])
        return (x - prepared).square().mean(dim=[1, 2, 3])  # [N]


class LpipsLoss:
    """LPIPS-VGG distance after area-downsampling to ``resolution`` (the official projector's loss).

    The target's features are computed once in :meth:`prepare`.
    """

    def __init__(self, lpips: LPIPS, resolution: int = 256) -> None:
        self.lpips = lpips
        self.resolution = resolution

    def prepare(self, target: torch.Tensor) -> Any:
        with torch.no_grad():
            return self.lpips.features(area_downsample(target, self.resolution))

    def __call__(self, images: torch.Tensor, prepared: Any) -> torch.Tensor:
        feats = self.lpips.features(area_downsample(images, self.resolution))
        return self.lpips.distance(feats, prepared)  # [N]


class WeightedLoss:
    """``sum_i w_i * loss_i``; each part prepares its own target state."""

    def __init__(self, parts: Sequence[tuple[float, TargetLoss]]) -> None:
        if not parts:
            raise ValueError("WeightedLoss needs at least one part")
        self.parts = list(parts)

    def prepare(self, target: torch.Tensor) -> list[Any]:
        return [loss.prepare(target) for _, loss in self.parts]

    def __call__(self, images: torch.Tensor, prepared: list[Any]) -> torch.Tensor:
        pairs = zip(self.parts, prepared, strict=True)
        (w0, loss0), p0 = next(pairs)
        total = w0 * loss0(images, p0)  # [N]
        for (w, loss), p in pairs:
            total = total + w * loss(images, p)
        return total


class IdentityLoss:
    """Baseline-mode loss: the paper's weighted identity terms ``λs·L_sketch + λc·L_color`` between
    the generated images and the targets (:func:`realface.losses.identity_loss`, per sample).

    ``config``: weights and settings (the paper's by default). ``lpips``: the LPIPS-VGG network of
    the colour term (None only when ``config.color_weight`` is 0). ``extractor``: the sketch
    extractor (default: the one ``config.sketch_extractor`` names, built when the term is on).
    """

    def __init__(
        self,
        config: IdentityLossConfig | None = None,
        lpips: LPIPS | None = None,
        extractor: torch.nn.Module | None = None,
    ) -> None:
        self.config = config if config is not None else IdentityLossConfig()
        if not self.config.enabled:
            raise ConfigError(
                "an identity-loss inversion needs sketch_weight or color_weight > 0, both are 0"
            )
        self.lpips = lpips
        self.extractor = extractor if extractor is not None else build_sketch_for(self.config)

    def prepare(self, target: torch.Tensor) -> torch.Tensor:
        return target

    def __call__(self, images: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        target = prepared.expand(images.shape[0], -1, -1, -1) if prepared.shape[0] == 1 else prepared
        if target.shape[-1] != images.shape[-1]:
            target = area_downsample(target, images.shape[-1])
        terms = identity_loss(images, target, self.config, extractor=self.extractor, lpips=self.lpips)
        return terms.total  # [N]


# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WStats:
    """w_avg: [w_dim] mean of mapped latents; w_std: scalar RMS distance to it (official definition)."""

    w_avg: torch.Tensor
    w_std: float


_W_STATS_CACHE: dict[tuple[str, int], WStats] = {}


def _mapping_fingerprint(G: Generator) -> str:
    h = hashlib.sha256()
    for k, v in G.mapping.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def w_stats(G: Generator, num_samples: int = 10000, seed: int = 123) -> WStats:
    """``w_avg`` and ``w_std`` from ``num_samples`` mapped latents (``RandomState(123)``, as the official
    projector). Cached per mapping network (by a hash of its weights) for the life of the process."""
    key = (_mapping_fingerprint(G), num_samples)
    if key in _W_STATS_CACHE:
        return _W_STATS_CACHE[key]
    device = next(G.parameters()).device
    z = torch.from_numpy(np.random.RandomState(seed).randn(num_samples, G.z_dim)).to(device, torch.float32)
    c = None
    if G.c_dim > 0:
        raise ConfigError("inversion of conditional generators is not supported")
    ws = []
    with torch.no_grad():
        for chunk in z.split(1000):
            ws.append(G.mapping(chunk, c)[:, 0])  # [n, w_dim]
    w = torch.cat(ws)  # [S, w_dim]
    w_avg = w.mean(dim=0)
    w_std = float(((w - w_avg).square().sum() / num_samples).sqrt())
    stats = WStats(w_avg=w_avg, w_std=w_std)
    _W_STATS_CACHE[key] = stats
    return stats


def check_aligned_size(size: tuple[int, int], resolution: int, source: str) -> None:
    """Refuse a target image that is not an aligned face for a generator of ``resolution``.

    ``size``: the image's (width, height). An inversion target must be the generator's square
    resolution: a photo (or a crop of another size) is not resized silently, because the projector
    only reproduces faces aligned the way the generator's training faces were.

    Raises:
        ImageError: ``size`` is not ``(resolution, resolution)``; the message names ``source`` and
            says to run ``realface align`` first.
    """
    width, height = size
    if (width, height) != (resolution, resolution):
        shape = "" if width == height else ", not square,"
        size_opt = f" --size {resolution}" if resolution in (256, 512, 1024) else ""
        raise ImageError(
            f"{source} is {width}x{height}{shape} but the generator inverts aligned {resolution}x{resolution} "
            f"faces; run `realface align{size_opt}` on the photo first and invert its crop"
        )


def noise_regularization(noise: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-sample multi-scale autocorrelation penalty of noise maps (official projector), [N].

    For each map v ([N, 1, R, R]) and each scale down to 8x8: mean(v * roll(v, 1, x))^2 +
    mean(v * roll(v, 1, y))^2, then 2x average pooling. Circular lag-1 autocorrelation, as upstream.
    """
    total = torch.zeros([])
    for v in noise:
        while True:
            total = total + (v * torch.roll(v, shifts=1, dims=3)).mean(dim=[1, 2, 3]).square()
            total = total + (v * torch.roll(v, shifts=1, dims=2)).mean(dim=[1, 2, 3]).square()
            if v.shape[2] <= 8:
                break
            v = F.avg_pool2d(v, kernel_size=2)
    return total  # [N]


def _lr_at(cfg: InvertConfig, t: float) -> float:
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / cfg.lr_rampup)
    return cfg.lr * ramp


def _check_targets(G: Generator, targets: torch.Tensor, seeds: Sequence[int] | None, seed: int) -> list[int]:
    """The per-target seeds, after checking that ``targets`` are [N, C, R, R] for ``G``."""
    R = G.img_resolution
    if targets.ndim != 4 or tuple(targets.shape[1:]) != (G.img_channels, R, R):
        raise ValueError(f"targets must be [N, {G.img_channels}, {R}, {R}], got {tuple(targets.shape)}")
    N = targets.shape[0]
    out = [seed] * N if seeds is None else list(seeds)
    if len(out) != N:
        raise ValueError(f"need one seed per target: {N} targets, {len(out)} seeds")
    return out


class _PerSampleRandn:
    """Normal draws made per sample from each sample's own seed (CPU generators), stacked on ``device``:
    a face's draws do not depend on the batch it is in."""

    def __init__(self, seeds: Sequence[int], device: torch.device) -> None:
        self.gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        self.device = device

    def __call__(self, shape: Sequence[int]) -> torch.Tensor:
        return torch.stack([torch.randn(list(shape), generator=g) for g in self.gens]).to(self.device)


def _start_params(
    G: Generator, stats: WStats, n: int, cfg: InvertConfig, randn: _PerSampleRandn
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """The optimised tensors at step 0: the latents at ``w_avg``, [n, num_ws, w_dim] in W+ or
    [n, 1, w_dim] in W, and, when ``cfg.optimize_noise``, one random noise map [n, 1, r, r] per noise
    layer."""
    layers_opt = G.num_ws if cfg.space == "w+" else 1
    w_opt = stats.w_avg.to(randn.device).reshape(1, 1, -1).repeat(n, layers_opt, 1).clone()
    noise = None
    if cfg.optimize_noise:
        layers = G.synthesis.noise_layers()
        noise = [randn([1, lay.resolution, lay.resolution]).requires_grad_(True) for lay in layers]
    return w_opt.requires_grad_(True), noise


def _active_noise(
    noise: list[torch.Tensor] | None, layers: Sequence[Any], coarse_res: int | None
) -> list[torch.Tensor | None] | None:
    """The noise maps that a synthesis stopping at ``coarse_res`` evaluates (None in place of the
    layers above it, which are not run at all); every map when ``coarse_res`` is None."""
    if noise is None:
        return None
    return [
        n if coarse_res is None or lay.resolution <= coarse_res else None
        for n, lay in zip(noise, layers, strict=True)
    ]


def _renormalize_(noise: Sequence[torch.Tensor]) -> None:
    """Each noise map back to zero mean and unit variance per sample, in place (official projector)."""
    with torch.no_grad():
        for n in noise:
            n -= n.mean(dim=[1, 2, 3], keepdim=True)
            n *= n.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()


class _Plateau:
    """Early stop: true once no sample's best loss has improved by more than ``tol`` (relative)
    for ``patience`` steps in a row."""

    def __init__(self, n: int, patience: int, tol: float) -> None:
        self.best = torch.full([n], float("inf"))
        self.patience, self.tol = patience, tol
        self.since_best = 0

    def update(self, d: torch.Tensor) -> bool:
        improved = d < self.best * (1 - self.tol)
        self.best = torch.minimum(self.best, d)
        self.since_best = 0 if bool(improved.any()) else self.since_best + 1
        return self.since_best >= self.patience


def invert(
    G: Generator,
    targets: torch.Tensor,
    loss: TargetLoss,
    cfg: InvertConfig = InvertConfig(),
    seeds: Sequence[int] | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    stats: WStats | None = None,
) -> InversionResult:
    """Optimise W+ (and noise) so that ``G.synthesis(ws, noise)`` matches ``targets`` under ``loss``.

    targets: [N, 3, R, R] in [-1, 1] at the generator's resolution (aligned faces). seeds: one per
    target (default ``cfg.seed`` for all). callback(step, steps, loss [N]) is called after each step.
    G is used in eval mode and is not modified (its noise buffers are left untouched).

    ``realface.invert`` is this module and can be called as this function. Example (a tiny random
    generator, pixel loss, a few steps)::

        >>> import torch, realface
        >>> G = realface.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
        ...     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))
        >>> with torch.no_grad():
        ...     target = G(torch.randn(2, 8), None)
        >>> cfg = realface.InvertConfig(steps=5, w_avg_samples=100)
        >>> result = realface.invert(G, target, realface.invert.PixelLoss(16), cfg)
        >>> G.num_ws, tuple(result.ws.shape), result.steps_run   # W+: one w per synthesis layer
        (6, (2, 6, 8), 5)
    """
    seeds = _check_targets(G, targets, seeds, cfg.seed)
    N, device = targets.shape[0], targets.device
    G = G.eval()
    stats = stats or w_stats(G, cfg.w_avg_samples)
    randn = _PerSampleRandn(seeds, device)
    w_opt, noise = _start_params(G, stats, N, cfg, randn)
    layers = G.synthesis.noise_layers()
    opt = torch.optim.Adam([w_opt, *(noise or [])], betas=(0.9, 0.999), lr=cfg.lr)

    coarse_steps = cfg.steps - cfg.fine_steps if cfg.coarse_to_fine else 0
    coarse_res = min(cfg.coarse_resolution, G.img_resolution)
    prepared_full = loss.prepare(targets)
    prepared_coarse = loss.prepare(area_downsample(targets, coarse_res)) if coarse_steps else None
    plateau = (
        _Plateau(N, cfg.early_stop_patience, cfg.early_stop_tol)
        if cfg.early_stop_patience is not None
        else None
    )

    bf16 = resolve_precision(cfg.precision, device) == "bf16"
    history = []
    for step in range(cfg.steps):
        t = step / cfg.steps
        coarse = step < coarse_steps
        w_noise_scale = stats.w_std * cfg.initial_noise_factor * max(0.0, 1.0 - t / cfg.noise_ramp) ** 2
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, t)
        ws = (w_opt + randn(w_opt.shape[1:]) * w_noise_scale).expand(-1, G.num_ws, -1)  # [N, num_ws, w_dim]
        step_noise = _active_noise(noise, layers, coarse_res if coarse else None)
        synth_kwargs: dict[str, Any] = dict(noise_mode="const", noise=step_noise)
        if coarse:
            synth_kwargs["out_resolution"] = coarse_res
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            images = G.synthesis(ws, **synth_kwargs)  # [N, 3, r, r]
            dist = loss(images, prepared_coarse if coarse else prepared_full).float()  # [N]
        total = dist.sum()
        if step_noise is not None and cfg.noise_reg_weight:
            active = [n for n in step_noise if n is not None]
            total = total + cfg.noise_reg_weight * noise_regularization(active).sum()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if noise is not None:
            _renormalize_(noise)
        d = dist.detach().cpu()
        history.append(d)
        if callback is not None:
            callback(step, cfg.steps, d)
        if plateau is not None and not coarse and plateau.update(d):
            log.info("early stop at step %d: no improvement for %d steps", step + 1, plateau.since_best)
            break
    ws_final = w_opt.detach().expand(-1, G.num_ws, -1).contiguous()  # [N, num_ws, w_dim]
    noise_final = [n.detach() for n in noise] if noise is not None else None
    with torch.no_grad():
        final = loss(G.synthesis(ws_final, noise_mode="const", noise=noise_final), prepared_full).cpu()
    return InversionResult(
        ws=ws_final,
        noise=noise_final,
        loss_history=torch.stack(history),
        steps_run=len(history),
        final_loss=final,
    )


class _CallableModule(types.ModuleType):
    """Lets ``realface.invert(...)`` call :func:`invert` while ``realface.invert.InvertConfig`` and the
    other names of this module stay reachable."""

    def __call__(self, *args: Any, **kwargs: Any) -> InversionResult:
        return invert(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
