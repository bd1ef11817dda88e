"""Pixel and perceptual similarity between image pairs (input, output): LPIPS-VGG and L2.

Protocol (stated in every report as :data:`SIMILARITY_PROTOCOL`):

1. both images are decoded to RGB in [0, 1] (:func:`realface.metrics.files.load_rgb01`) and resized to
   ``size × size`` (default 256): area averaging when the image is at least ``size`` on both sides (an
   exact box filter for 1024 → 256), bilinear with antialiasing otherwise; ``size = 0`` compares the
   images at their own size, which must then be equal;
2. mapped to [-1, 1] (``2x − 1``);
3. **LPIPS**: LPIPS-VGG v0.1 (:mod:`realface.nn.lpips`: torchvision's ImageNet VGG16 and the v0.1 heads);
4. **L2**: the mean squared error over channels and pixels of the [-1, 1] images,
   ``mean((x − y)²)``; the same error measured in [0, 1] is a quarter of it.

The paper (LPIPS 0.135, L2 0.048) does not spell out its protocol; the numbers match the convention of
the StyleGAN inversion literature it follows (e4e, ReStyle, PTI): 256×256 images normalised to [-1, 1],
LPIPS-VGG (or -Alex) and ``torch.nn.MSELoss`` as "L2" — which is what is computed here.

Pairs whose images cannot be read, or whose aspect ratios differ by more than 1 %, are recorded as
failed with the reason; the summary (mean and median of each metric) covers the others.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from realface.errors import ConfigError, RealFaceError
from realface.metrics.files import ImagePair, PairSet, load_rgb01

__all__ = [
    "SIMILARITY_PROTOCOL",
    "SimilarityConfig",
    "SimilarityPairResult",
    "SimilarityReport",
    "prepare_image",
    "l2_distance",
    "evaluate_similarity",
]

log = logging.getLogger(__name__)

SIMILARITY_PROTOCOL = (
    "both images resized to {size}x{size} (area when shrinking, antialiased bilinear otherwise), "
    "RGB in [-1,1]; lpips = LPIPS-VGG v0.1; l2 = mean squared error in [-1,1]"
)
_ASPECT_TOL = 0.01


@dataclass(frozen=True)
class SimilarityConfig:
    """Options of :func:`evaluate_similarity`.

    Attributes:
        size: side both images are resized to; 0 keeps the images' own (equal) size. Default 256.
        batch_size: pairs per LPIPS forward pass. Default 16.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (default).
        lpips_vgg: a torchvision VGG16 state dict; default the registry file ``tv-vgg16``.
        lpips_heads: the LPIPS v0.1 head file; default the registry file ``lpips-vgg-v0.1``.
        progress: show a progress bar. Default True.
    """

    size: int = 256
    batch_size: int = 16
    device: str = "auto"
    lpips_vgg: Path | None = None
    lpips_heads: Path | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.size != 0 and self.size < 16:
            raise ConfigError(
                f"--size must be 0 (native) or at least 16 px (LPIPS needs 16), got {self.size}"
            )
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")

    @property
    def protocol(self) -> str:
        return SIMILARITY_PROTOCOL.format(size=self.size or "native")


def prepare_image(rgb01: np.ndarray, size: int) -> torch.Tensor:
    """``[H, W, 3]`` in [0, 1] → ``[1, 3, size, size]`` in [-1, 1] (``size = 0``: ``[1, 3, H, W]``)."""
    if rgb01.ndim != 3 or rgb01.shape[2] != 3:
        raise ValueError(f"expected RGB [H, W, 3], got {rgb01.shape}")
    x = torch.from_numpy(np.ascontiguousarray(rgb01, np.float32)).permute(2, 0, 1)[None]  # [1, 3, H, W]
    h, w = x.shape[-2:]
    if size and (h, w) != (size, size):
        if min(h, w) >= size:
            x = F.interpolate(x, size=(size, size), mode="area")  # [1, 3, size, size]
        else:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x * 2 - 1  # [1, 3, S, S] in [-1, 1]


def l2_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: ``[N, C, H, W]`` × 2 → ``[N]``."""
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(
            f"l2_distance: two [N, C, H, W] tensors of one shape expected, got {x.shape}, {y.shape}"
        )
    return (x - y).square().mean(dim=(1, 2, 3))  # [N]


@dataclass(frozen=True)
class SimilarityPairResult:
    """One pair: LPIPS and L2 (module docstring), or the reason it failed."""

    name: str
    input: Path
    output: Path
    lpips: float | None = None
    l2: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_row(self) -> dict:
        return {
            "name": self.name,
            "input": str(self.input),
            "output": str(self.output),
            "lpips": self.lpips,
            "l2": self.l2,
            "error": self.error,
        }


@dataclass(frozen=True)
class SimilarityReport:
    """Per-pair results and the summary (over successful pairs)."""

    protocol: str
    pairs: tuple[SimilarityPairResult, ...]
    unmatched: int = 0

    def summary(self) -> dict:
        ok = [p for p in self.pairs if p.ok]
        lp = [p.lpips for p in ok if p.lpips is not None]
        l2 = [p.l2 for p in ok if p.l2 is not None]
        return {
            "metric": "lpips_vgg+l2",
            "pairs": len(self.pairs),
            "evaluated": len(ok),
            "failed": len(self.pairs) - len(ok),
            "unmatched": self.unmatched,
            "mean_lpips": statistics.fmean(lp) if lp else None,
            "median_lpips": statistics.median(lp) if lp else None,
            "mean_l2": statistics.fmean(l2) if l2 else None,
            "median_l2": statistics.median(l2) if l2 else None,
            "protocol": self.protocol,
        }


def _load_pair(pair: ImagePair, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = load_rgb01(pair.input), load_rgb01(pair.output)  # [H, W, 3] each
    (ha, wa), (hb, wb) = a.shape[:2], b.shape[:2]
    if size == 0 and (ha, wa) != (hb, wb):
        raise ConfigError(f"{pair.output}: size {wb}x{hb} differs from the input's {wa}x{ha} (use --size N)")
    if abs((wa / ha) / (wb / hb) - 1) > _ASPECT_TOL:
        raise ConfigError(
            f"{pair.output}: aspect ratio {wb}x{hb} differs from the input's {wa}x{ha}; not the same framing"
        )
    return prepare_image(a, size), prepare_image(b, size)


def evaluate_similarity(
    pairs: PairSet, config: SimilarityConfig | None = None, lpips: torch.nn.Module | None = None
) -> SimilarityReport:
    """LPIPS and L2 of every pair (module docstring); failures are recorded per pair, never raised.

    Args:
        pairs: the pairs.
        config: :class:`SimilarityConfig`.
        lpips: an :class:`realface.nn.lpips.LPIPS` network; default :func:`load_lpips_vgg` with
            ``config.lpips_vgg`` / ``config.lpips_heads``.
    """
    from realface.nn.lpips import load_lpips_vgg
    from realface.utils.device import resolve_device

    config = config or SimilarityConfig()
    device = resolve_device(config.device)
    if lpips is None:
        lpips = load_lpips_vgg(device, vgg_path=config.lpips_vgg, lin_path=config.lpips_heads)
    lpips = lpips.to(device).eval()
    results: dict[int, SimilarityPairResult] = {}
    pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def flush() -> None:
        groups: dict[tuple[int, ...], list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
        for item in pending:  # size 0: images of different sizes cannot share a batch
            groups.setdefault(tuple(item[1].shape), []).append(item)
        for items in groups.values():
            x = torch.cat([a for _, a, _ in items]).to(device)  # [B, 3, S, S]
            y = torch.cat([b for _, _, b in items]).to(device)  # [B, 3, S, S]
            with torch.no_grad():
                d_lpips = lpips(x, y).cpu()  # [B]
                d_l2 = l2_distance(x, y).cpu()  # [B]
            for j, (i, _, _) in enumerate(items):
                p = pairs.pairs[i]
                results[i] = SimilarityPairResult(
                    p.name, p.input, p.output, lpips=float(d_lpips[j]), l2=float(d_l2[j])
                )
        pending.clear()

    for i, pair in enumerate(tqdm(pairs.pairs, unit="pair", desc="similarity", disable=not config.progress)):
        try:
            a, b = _load_pair(pair, config.size)
        except RealFaceError as exc:
            log.warning("similarity: pair %s failed: %s", pair.name, exc)
            results[i] = SimilarityPairResult(pair.name, pair.input, pair.output, error=str(exc))
            continue
        pending.append((i, a, b))
        if len(pending) >= config.batch_size:
            flush()
    flush()
    return SimilarityReport(
        protocol=config.protocol,
        pairs=tuple(results[i] for i in range(len(pairs.pairs))),
        unmatched=len(pairs.unmatched_inputs) + len(pairs.unmatched_outputs),
    )
