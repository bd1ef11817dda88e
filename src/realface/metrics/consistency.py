"""Identity consistency of ``G_real`` and ``G_rendering`` on shared latents (the paper's Table 1 protocol).

``G_rendering`` is fine-tuned from ``G_real`` with the mapping network frozen, so one latent names the
same person in both generators. The protocol measures how well that holds:

1. latents ``z`` of the official ``generate.py`` seeds ``seed0 … seed0 + num − 1``
   (:func:`realface.sampling.z_from_seed`);
2. ``w = G_real.mapping(z, truncation_psi)`` ``[N, num_ws, w_dim]``, the W+ code both generators share;
3. ``a = G_real.synthesis(w)`` and ``b = G_rendering.synthesis(w)`` ``[N, 3, R, R]``, rounded to uint8
   as the official tools save images (:func:`realface.sampling.to_uint8`); constant noise by default,
   ``"random"`` noise is drawn from ``torch.manual_seed(seed0)``;
4. both faces are embedded by a registered identity embedder (:data:`realface.metrics.identity.EMBEDDERS`,
   ``"dlib"`` by default) on their FFHQ-aligned position (``embed_aligned``: no detection, so no pair fails);
5. per pair: the cosine similarity and the Euclidean distance of the two embeddings; over the pairs:
   mean and 95 % Student-t interval of each (:func:`mean_ci`), and the share of pairs closer than the
   embedder's same-person threshold (dlib: 0.6).

The paper reports 0.57 with CurricularFace: ``embedder="curricularface"`` measures in that space
(:class:`realface.metrics.identity.CurricularFaceEmbedder`, weights fetched by hand); dlib's embedding space
differs, so its cosine values are comparable between generators measured here, not with that number. The same protocol in the toy world,
where identity is read back as face parameters, is :func:`realface.bench.consistency.toy_consistency`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from realface.errors import ConfigError
from realface.metrics.identity import DLIB_SAME_PERSON, EMBEDDERS, FaceEmbedder, cosine_similarity

if TYPE_CHECKING:
    from realface.nn.stylegan2 import Generator

__all__ = [
    "ConsistencyConfig",
    "PROTOCOL",
    "check_shared_space",
    "identity_consistency",
    "mean_ci",
]

PROTOCOL = (
    "identity-consistency: same z (generate.py seeds) -> G_real mapping -> both syntheses, uint8; "
    "embeddings of the FFHQ-aligned faces; cosine similarity and distance per pair, mean and 95% CI"
)


def mean_ci(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two-sided Student-t confidence interval of the mean: ``(mean, low, high)``
    (``low`` and ``high`` are NaN for fewer than two values)."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


def _summary(values: Sequence[float]) -> dict:
    m, lo, hi = mean_ci(values)
    return {"mean": m, "ci95": [lo, hi] if math.isfinite(lo) else None}


@dataclass(frozen=True)
class ConsistencyConfig:
    """Options of :func:`identity_consistency`.

    Attributes:
        num: latents (pairs) to compare, at least 2. Default 1000.
        seed0: seed of the first latent; latent ``i`` uses seed ``seed0 + i``. Default 0.
        truncation_psi: truncation of ``G_real``'s mapping (1: none). Default 1.
        noise_mode: ``"const"`` (default), ``"random"`` (seeded by ``seed0``) or ``"none"``.
        batch_size: latents per forward pass. Default 16.
        embedder: name in :data:`realface.metrics.identity.EMBEDDERS` (``"dlib"``, ``"curricularface"``).
            Default ``"dlib"``.
        threshold: embedding distance below which a pair is the same person. Default 0.6 (dlib's).
        progress: show a progress bar. Default True.
    """

    num: int = 1000
    seed0: int = 0
    truncation_psi: float = 1.0
    noise_mode: str = "const"
    batch_size: int = 16
    embedder: str = "dlib"
    threshold: float = DLIB_SAME_PERSON
    progress: bool = True

    def __post_init__(self) -> None:
        if self.num < 2:
            raise ConfigError(
                f"num must be at least 2 (a 95% interval needs two pairs), got {self.num}", field="num"
            )
        if self.seed0 < 0 or self.seed0 + self.num > 2**32:
            raise ConfigError(f"seeds {self.seed0}..{self.seed0 + self.num - 1} are outside [0, 2**32)")
        if self.noise_mode not in ("const", "random", "none"):
            raise ConfigError(
                f"noise_mode must be const, random or none; got {self.noise_mode!r}", field="noise_mode"
            )
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if not math.isfinite(self.truncation_psi):
            raise ConfigError(f"truncation psi must be a finite number, got {self.truncation_psi}")
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ConfigError(
                f"the same-person threshold must be positive, got {self.threshold}", field="threshold"
            )
        if self.embedder not in EMBEDDERS:
            from realface.weights import REGISTRY

            known = ", ".join(sorted(EMBEDDERS))
            if self.embedder in REGISTRY:
                raise ConfigError(
                    f"embedder {self.embedder!r} is a weights record, but no identity embedder is built on "
                    f"it yet; embedders: {known}",
                    field="embedder",
                )
            raise ConfigError(f"unknown embedder {self.embedder!r}; embedders: {known}", field="embedder")


def check_shared_space(G_real: Generator, G_rendering: Generator) -> None:
    """Raise :class:`ConfigError` unless both generators read the same W+ (``num_ws`` × ``w_dim``), draw
    the same resolution and are unconditional."""
    for attr in ("z_dim", "w_dim", "num_ws", "img_resolution", "img_channels"):
        a, b = getattr(G_real, attr, None), getattr(G_rendering, attr, None)
        if a != b:
            raise ConfigError(
                f"the generators do not share one latent space: {attr} is {a} for the real generator "
                f"and {b} for the rendering generator (G_rendering must be fine-tuned from G_real)"
            )
    if getattr(G_real, "c_dim", 0) or getattr(G_rendering, "c_dim", 0):
        raise ConfigError("identity consistency of conditional generators is not supported")


def shares_mapping(G_real: Generator, G_rendering: Generator) -> bool:
    """Whether both mapping networks hold identical weights (they do when G_rendering's was frozen)."""
    a, b = G_real.mapping.state_dict(), G_rendering.mapping.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def identity_consistency(
    G_real: Generator,
    G_rendering: Generator,
    config: ConsistencyConfig | None = None,
    embedder: FaceEmbedder | None = None,
) -> dict:
    """Identity similarity of ``G_real(w)`` and ``G_rendering(w)`` over shared latents (module docstring).

    Both generators run on the device of ``G_real``'s parameters; embeddings are computed on the CPU.
    Returns a dict: ``protocol``, the settings, ``cosine`` and ``distance`` (``{"mean": m, "ci95": [lo,
    hi]}``), ``same_person_rate``, ``mapping_shared`` and ``per_sample`` (``seed``, ``cosine``,
    ``distance`` lists in latent order).
    """
    from realface.sampling import to_uint8, z_from_seed

    config = config or ConsistencyConfig()
    check_shared_space(G_real, G_rendering)
    embedder = embedder or EMBEDDERS[config.embedder]()
    device = next(G_real.parameters()).device
    G_rendering = G_rendering.to(device)
    seeds = list(range(config.seed0, config.seed0 + config.num))
    cos: list[float] = []
    dist: list[float] = []
    with (
        _seeded(config.seed0, device),
        torch.no_grad(),
        tqdm(total=len(seeds), unit="pair", desc="consistency", disable=not config.progress) as bar,
    ):
        for s in range(0, len(seeds), config.batch_size):
            chunk = seeds[s : s + config.batch_size]
            z = torch.cat([z_from_seed(k, G_real.z_dim) for k in chunk]).to(device)  # [B, z_dim]
            ws = G_real.mapping(z, None, truncation_psi=config.truncation_psi)  # [B, num_ws, w_dim]
            a = to_uint8(G_real.synthesis(ws, noise_mode=config.noise_mode))  # [B, R, R, 3] uint8
            b = to_uint8(G_rendering.synthesis(ws, noise_mode=config.noise_mode))  # [B, R, R, 3] uint8
            for ia, ib in zip(a, b, strict=True):
                ea, eb = embedder.embed_aligned(ia), embedder.embed_aligned(ib)  # [D], [D]
                cos.append(cosine_similarity(ea, eb))
                dist.append(float(np.linalg.norm(ea - eb)))
            bar.update(len(chunk))
    return {
        "protocol": PROTOCOL,
        "metric": f"identity_consistency_{config.embedder}",
        "embedder": config.embedder,
        "num": config.num,
        "seed0": config.seed0,
        "truncation_psi": config.truncation_psi,
        "noise_mode": config.noise_mode,
        "threshold": config.threshold,
        "mapping_shared": shares_mapping(G_real, G_rendering),
        "cosine": _summary(cos),
        "distance": _summary(dist),
        "same_person_rate": sum(d < config.threshold for d in dist) / len(dist),
        "per_sample": {"seed": seeds, "cosine": cos, "distance": dist},
    }
