"""Fréchet Inception Distance between two image sets, or between a generator and an image set.

Protocol (pytorch-fid's, so that numbers are comparable with ``python -m pytorch_fid A B``):

1. **Images.** Every image file under a folder, recursively (:func:`realface.metrics.files.list_images`),
   decoded with :func:`realface.imageio.load_image` to RGB in [0, 1] at its own size (alpha dropped,
   grayscale replicated, EXIF orientation applied — pytorch-fid ignores EXIF orientation).
   A generator's images are ``G(z, truncation_psi)`` rounded to uint8 exactly as the official tools save
   them (:func:`realface.sampling.to_uint8`) and divided by 255, so sampling a network equals writing its
   images as PNG and reading the folder.
2. **Features.** :class:`realface.nn.inception.FIDInception3` with ``pt_inception-2015-12-05-6726825d.pth``
   (registry id ``fid-inception``): bilinear resize to 299×299 (``align_corners=False``, no antialias),
   ``2x − 1``, 2048-d pool3 features, in float32; statistics in float64.
3. **Statistics.** ``mu`` = mean of the features, ``sigma`` = their covariance (``np.cov``, unbiased,
   ``N − 1``).
4. **Distance.** ``FID = ‖mu1 − mu2‖² + tr(sigma1 + sigma2 − 2·(sigma1·sigma2)^½)``, computed as pytorch-fid
   does with ``scipy.linalg.sqrtm`` (:func:`frechet_distance`). Sets of at most 2048 images keep their
   features, and the distance is then computed exactly from them (:func:`frechet_distance_low_rank`,
   the same number without the 2048² square root); reports name the method used.

Generator latents: sample ``i`` of ``N`` uses seed ``i`` (``seed0 + i``) and the official ``generate.py``
latent ``RandomState(seed).randn(1, z_dim)`` (:func:`realface.sampling.z_from_seed`), so the same
network gives the same images as ``realface generate --seeds 0-N``. With ``noise_mode="random"`` (the
official metric's setting, the default) the noise comes from ``torch.manual_seed(seed0)``, so a run is
reproducible for the same batch size and device. The official StyleGAN2-ADA metric draws unseeded
``torch.randn`` latents and uses its own TorchScript translation of the TF graph with a different resize,
so its numbers are close to, not identical with, pytorch-fid's (and these).

Statistics cache: ``<cache>/stats/<key>.npz`` (``realface.weights.cache_dir()``), written atomically,
read with ``np.load(allow_pickle=False)``. The key is the sha256 of a JSON document holding the protocol
version, the sha256 of the Inception weight file, and

- for a folder: every image's relative path, size and modification time (ns), sorted by path — so adding,
  removing, renaming or rewriting a file gives a new key; file contents are not hashed, so listing a
  large folder costs one ``stat`` per file;
- for a generator: the sha256 of the network file, the network's name in it, ``num``, ``seed0``,
  ``truncation_psi``, ``noise_mode`` and ``batch_size``.

An ``.npz`` with arrays ``mu`` and ``sigma`` (the layout pytorch-fid's ``--save-stats`` writes) may stand
in for a folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.linalg
import torch
from tqdm import tqdm

from realface.errors import ConfigError, RealFaceError
from realface.metrics.files import list_images, load_rgb01
from realface.nn.inception import FID_FEATURE_DIM, FIDInception3, load_fid_inception

if TYPE_CHECKING:
    from realface.nn.stylegan2 import Generator

__all__ = [
    "FIDConfig",
    "FeatureStats",
    "InceptionExtractor",
    "frechet_distance",
    "frechet_distance_low_rank",
    "fid_from_stats",
    "stats_from_features",
    "folder_stats",
    "generator_stats",
    "load_stats",
    "save_stats",
    "fid_metric_name",
    "compute_fid",
    "FIDResult",
    "GeneratorSamplingConfig",
    "STATS_PROTOCOL",
]

log = logging.getLogger(__name__)

STATS_PROTOCOL = "realface-fid/1: pytorch-fid pool3, bilinear 299 align_corners=False, [0,1]->[-1,1]"
"""Version string of the feature protocol; part of every cache key. Change it when the protocol changes."""

_IMAG_TOL = 1e-3  # largest imaginary part tolerated on the diagonal of sqrtm(sigma1·sigma2)


@dataclass(frozen=True)
class FIDConfig:
    """Options of the FID computations.

    Attributes:
        batch_size: images per Inception (and generator) forward pass. Default 50 (pytorch-fid's).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        use_cache: read and write statistics in the cache. Default True.
        progress: show progress bars. Default True.
    """

    batch_size: int = 50
    device: str = "auto"
    use_cache: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class GeneratorSamplingConfig:
    """How images are drawn from a generator for FID.

    Attributes:
        num: number of images. Default 50000 (``fid50k``).
        seed0: seed of the first image; image ``i`` uses seed ``seed0 + i``. Default 0.
        truncation_psi: 1 (default) means no truncation, as FID requires.
        noise_mode: ``"random"`` (default, as the official metric), ``"const"`` or ``"none"``.
        which: network to use in the file (``"G_ema"`` by default, else the only generator).
    """

    num: int = 50000
    seed0: int = 0
    truncation_psi: float = 1.0
    noise_mode: str = "random"
    which: str | None = None

    def __post_init__(self) -> None:
        if self.num < 2:
            raise ConfigError(f"FID needs at least 2 generated images, got --num {self.num}")
        if self.noise_mode not in ("random", "const", "none"):
            raise ConfigError(f"noise mode must be random, const or none; got {self.noise_mode!r}")
        if self.seed0 < 0 or self.seed0 + self.num > 2**32:
            raise ConfigError(f"seeds {self.seed0}..{self.seed0 + self.num - 1} are outside [0, 2**32)")


@dataclass(frozen=True)
class FeatureStats:
    """Mean ``mu`` ``[D]`` and covariance ``sigma`` ``[D, D]`` (float64) of ``num`` feature vectors.

    ``features`` ``[num, D]`` keeps the vectors themselves for small sets (``num ≤ D``), where the
    covariance is rank-deficient and :func:`frechet_distance_low_rank` computes the distance exactly;
    ``None`` for larger sets.
    """

    mu: np.ndarray
    sigma: np.ndarray
    num: int
    source: str = ""
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        d = self.mu.shape[0] if self.mu.ndim == 1 else -1
        if d < 1 or self.sigma.shape != (d, d):
            raise ValueError(
                f"FeatureStats: mu [D] and sigma [D, D] expected, got {self.mu.shape}, {self.sigma.shape}"
            )
        if self.features is not None and (self.features.ndim != 2 or self.features.shape[1] != d):
            raise ValueError(f"FeatureStats: features [N, {d}] expected, got {self.features.shape}")


def fid_metric_name(num_generated: int | None) -> str:
    """Upstream-style metric name: ``fid50k_full`` for 50000 generated images against a full folder,
    ``fid_full`` for two folders (every image of each)."""
    if num_generated is None:
        return "fid_full"
    if num_generated % 1000 == 0:
        return f"fid{num_generated // 1000}k_full"
    return f"fid{num_generated}_full"


# ---------------------------------------------------------------------------------------------- distance


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    ``d² = ‖mu1 − mu2‖² + tr(sigma1) + tr(sigma2) − 2·tr((sigma1·sigma2)^½)``, computed in float64 with
    ``scipy.linalg.sqrtm``. When the product is so singular that ``sqrtm`` returns non-finite values,
    ``eps·I`` is added to both covariances and the root is recomputed (pytorch-fid's remedy). ``sqrtm``
    may return a complex matrix with round-off imaginary parts; they are dropped when the diagonal's
    imaginary parts are below 1e-3, otherwise a :class:`RealFaceError` is raised.

    Args:
        mu1, mu2: means ``[D]``.
        sigma1, sigma2: covariances ``[D, D]``.
        eps: the diagonal offset used only when needed. Default 1e-6.

    Returns:
        The distance (a float; tiny negative values from round-off are possible for identical inputs).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"frechet_distance: mu [D] and sigma [D, D] expected with one D; got mu {mu1.shape} / {mu2.shape}, "
            f"sigma {s1.shape} / {s2.shape}"
        )
    diff = mu1 - mu2  # [D]
    covmean = scipy.linalg.sqrtm(s1 @ s2)  # [D, D], possibly complex
    if not np.isfinite(covmean).all():
        log.warning("FID: sigma1·sigma2 is singular; adding %g to the diagonal of both covariances", eps)
        offset = np.eye(d) * eps  # [D, D]
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))  # [D, D]
    if np.iscomplexobj(covmean):
        worst = float(np.abs(np.diagonal(covmean).imag).max())
        if worst > _IMAG_TOL:
            raise RealFaceError(
                f"FID: the matrix square root has imaginary diagonal parts up to {worst:.3g} (> {_IMAG_TOL}); "
                "the covariances are not positive semi-definite (too few images, or NaN features?)"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def frechet_distance_low_rank(features1: np.ndarray, features2: np.ndarray) -> float:
    """The Fréchet distance of the Gaussians fitted to two small feature sets, exactly.

    With centred features ``A`` ``[n1, D]`` and ``B`` ``[n2, D]``, ``sigma1 = AᵀA / (n1 − 1)`` and
    ``sigma2 = BᵀB / (n2 − 1)``. The non-zero eigenvalues of ``sigma1·sigma2`` are those of
    ``(ABᵀ)(ABᵀ)ᵀ / ((n1 − 1)(n2 − 1))``, so ``tr((sigma1·sigma2)^½)`` is the sum of the singular values of
    the small matrix ``ABᵀ`` ``[n1, n2]`` divided by ``√((n1 − 1)(n2 − 1))``. The result equals
    :func:`frechet_distance` of the same statistics (``tests/metrics/test_fid.py`` checks it), without
    a ``D × D`` matrix square root (seconds to minutes on a CPU for D = 2048) whose null space is
    round-off when ``n < D``.
    """
    f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise ValueError(
            f"frechet_distance_low_rank: two [N >= 2, D] arrays expected, got {f1.shape}, {f2.shape}"
        )
    n1, n2 = len(f1), len(f2)
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)  # [D]
    a, b = f1 - mu1, f2 - mu2  # [n1, D], [n2, D]
    diff = mu1 - mu2  # [D]
    tr1, tr2 = np.sum(a * a) / (n1 - 1), np.sum(b * b) / (n2 - 1)
    nuclear = np.linalg.svd(a @ b.T, compute_uv=False).sum()  # Σ σ_i(ABᵀ), [n1, n2] matrix
    return float(diff @ diff + tr1 + tr2 - 2.0 * nuclear / np.sqrt((n1 - 1) * (n2 - 1)))


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> tuple[float, str]:
    """``(fid, method)``: :func:`frechet_distance_low_rank` when both sets kept their features (``num ≤ D``),
    else :func:`frechet_distance` (``sqrtm``, pytorch-fid's computation)."""
    if a.mu.shape != b.mu.shape:
        raise ConfigError(
            f"FID: statistics of different widths ({a.mu.shape[0]} vs {b.mu.shape[0]}): {a.source} and {b.source}"
        )
    if a.features is not None and b.features is not None:
        return frechet_distance_low_rank(a.features, b.features), "low-rank"
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma), "sqrtm"


def stats_from_features(features: np.ndarray, source: str = "") -> FeatureStats:
    """Mean and unbiased covariance of ``features`` ``[N, D]`` (N ≥ 2), float64; the features themselves
    are kept when ``N ≤ D``."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ConfigError(
            f"FID needs at least 2 images per set to estimate a covariance; {source or 'a set'} has "
            f"{features.shape[0] if features.ndim == 2 else 0}"
        )
    if not np.isfinite(features).all():
        raise RealFaceError(f"FID: non-finite Inception features for {source or 'a set'}")
    f = features.astype(np.float64)  # [N, D]
    keep = features if features.shape[0] <= features.shape[1] else None
    return FeatureStats(
        mu=f.mean(axis=0), sigma=np.cov(f, rowvar=False), num=f.shape[0], source=source, features=keep
    )


# ---------------------------------------------------------------------------------------------- features


class InceptionExtractor:
    """Batches of images in [0, 1] → pool3 features ``[N, 2048]`` float32 (numpy).

    Args:
        model: the FID Inception (frozen, eval).
        identity: a string naming the weights (their sha256 for the real file); part of cache keys.
        device: where ``model`` runs.
    """

    def __init__(self, model: FIDInception3, identity: str, device: torch.device) -> None:
        self.model = model.eval().requires_grad_(False).to(device)
        self.identity = identity
        self.device = device

    @classmethod
    def load(cls, device: torch.device, path: str | os.PathLike | None = None) -> InceptionExtractor:
        """The real network (``weight_path("fid-inception")`` unless ``path`` is given)."""
        from realface.weights import cache_dir, sha256_file, weight_path

        file = Path(path) if path is not None else weight_path("fid-inception")
        model = load_fid_inception(device, file)
        return cls(model, identity=sha256_file(file, root=cache_dir()), device=device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """``images`` ``[N, 3, 299, 299]`` (already resized, [0, 1]) → ``[N, 2048]`` float32."""
        feats = self.model(images.to(self.device, torch.float32))  # [N, 2048]
        if feats.shape != (images.shape[0], FID_FEATURE_DIM):
            raise RuntimeError(
                f"FID Inception returned {tuple(feats.shape)}, expected [{images.shape[0]}, 2048]"
            )
        return feats.cpu().numpy()


def _to_inception_input(rgb01: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` float in [0, 1] → ``[1, 3, 299, 299]`` bilinear-resized (the preprocess resize is then
    the identity, so images of different sizes can share a batch)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb01)).permute(2, 0, 1)[None]  # [1, 3, H, W]
    return torch.nn.functional.interpolate(
        x, size=(299, 299), mode="bilinear", align_corners=False
    )  # [1, 3, 299, 299]


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def folder_features(
    files: Sequence[Path], extractor: Callable[[torch.Tensor], np.ndarray], config: FIDConfig
) -> np.ndarray:
    """Pool3 features ``[N, 2048]`` of image files (resized one by one, run in batches)."""
    out: list[np.ndarray] = []
    with tqdm(total=len(files), unit="img", desc="FID features", disable=not config.progress) as bar:
        for chunk in _batches(files, config.batch_size):
            x = torch.cat([_to_inception_input(load_rgb01(p)) for p in chunk])  # [B, 3, 299, 299]
            out.append(extractor(x))  # [B, 2048]
            bar.update(len(chunk))
    return np.concatenate(out)  # [N, 2048]


# ------------------------------------------------------------------------------------------------ cache


def _key(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def folder_cache_key(folder: Path, files: Sequence[Path], extractor_identity: str) -> str:
    """Content key of a folder's statistics (see the module docstring)."""
    listing = []
    for p in files:
        st = p.stat()
        listing.append([p.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns])
    return _key(
        {"protocol": STATS_PROTOCOL, "inception": extractor_identity, "kind": "folder", "files": listing}
    )


def _stats_path(key: str) -> Path:
    from realface.weights import cache_dir

    return cache_dir() / "stats" / f"{key}.npz"


def save_stats(dest: str | os.PathLike, stats: FeatureStats, key: str = "") -> Path:
    """Write ``mu``, ``sigma``, ``num``, ``key`` and ``source`` to an ``.npz``, atomically (no pickled objects)."""
    from realface.utils.fs import atomic_open

    with atomic_open(dest, "wb") as f:
        extra: dict[str, Any] = {} if stats.features is None else {"features": stats.features}
        np.savez(
            f,
            mu=stats.mu,
            sigma=stats.sigma,
            num=np.int64(stats.num),
            key=np.str_(key),
            source=np.str_(stats.source),
            **extra,
        )
    return Path(dest)


def load_stats(path: str | os.PathLike) -> FeatureStats:
    """Read an ``.npz`` with arrays ``mu`` ``[D]`` and ``sigma`` ``[D, D]`` (ours or pytorch-fid's), and
    ``features`` ``[N, D]`` when present.

    Raises:
        RealFaceError: the file is not such an archive (the message names it).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
            num = int(data["num"]) if "num" in data.files else 0
            features = np.asarray(data["features"]) if "features" in data.files else None
    except (OSError, ValueError, KeyError) as exc:
        raise RealFaceError(
            f"{path}: not FID statistics (an .npz with arrays 'mu' and 'sigma'): {exc}"
        ) from None
    try:
        return FeatureStats(mu=mu, sigma=sigma, num=num, source=str(path), features=features)
    except ValueError as exc:
        raise RealFaceError(f"{path}: {exc}") from None


def _cached(key: str, use_cache: bool, compute: Callable[[], FeatureStats]) -> tuple[FeatureStats, bool]:
    """``(stats, from_cache)``: the cached statistics for ``key``, else ``compute()`` and store them."""
    path = _stats_path(key)
    if use_cache and path.is_file():
        try:
            stats = load_stats(path)
            log.info("FID statistics from the cache: %s", path)
            return stats, True
        except RealFaceError as exc:
            log.warning("ignoring an unreadable statistics cache file: %s", exc)
    stats = compute()
    if use_cache:
        try:
            save_stats(path, stats, key)
            log.debug("FID statistics cached in %s", path)
        except OSError as exc:  # a read-only cache costs a recomputation next time, nothing more
            log.warning("could not cache FID statistics in %s: %s", path, exc)
    return stats, False


# -------------------------------------------------------------------------------------------- the sets


def folder_stats(
    folder: str | os.PathLike, extractor: InceptionExtractor, config: FIDConfig
) -> tuple[FeatureStats, bool]:
    """Statistics of every image under ``folder`` (or of an ``.npz`` given instead): ``(stats, from_cache)``."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix == ".npz":
        return load_stats(folder), True
    files = list_images(folder)
    if len(files) < 2:
        raise ConfigError(f"{folder}: FID needs at least 2 images, found {len(files)}")
    key = folder_cache_key(folder, files, extractor.identity)
    return _cached(
        key,
        config.use_cache,
        lambda: stats_from_features(folder_features(files, extractor, config), source=str(folder)),
    )


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def generator_features(
    G: Generator,
    sampling: GeneratorSamplingConfig,
    extractor: Callable[[torch.Tensor], np.ndarray],
    config: FIDConfig,
    device: torch.device,
) -> np.ndarray:
    """Pool3 features ``[num, 2048]`` of ``num`` generated images (seeds ``seed0 …``; see module docstring)."""
    from realface.sampling import to_uint8, z_from_seed

    if getattr(G, "c_dim", 0):
        raise ConfigError(f"FID of conditional generators ({G.c_dim} classes) is not supported")
    G = G.to(device).eval()
    seeds = list(range(sampling.seed0, sampling.seed0 + sampling.num))
    out: list[np.ndarray] = []
    with (
        _seeded(sampling.seed0, device),
        torch.no_grad(),
        tqdm(total=len(seeds), unit="img", desc="FID generator", disable=not config.progress) as bar,
    ):
        for chunk in _batches(seeds, config.batch_size):
            z = torch.cat([z_from_seed(s, G.z_dim) for s in chunk]).to(device)  # [B, z_dim]
            img = G(
                z, None, truncation_psi=sampling.truncation_psi, noise_mode=sampling.noise_mode
            )  # [B, 3, R, R]
            u8 = torch.from_numpy(to_uint8(img))  # [B, R, R, 3] uint8
            x = u8.permute(0, 3, 1, 2).to(torch.float32) / 255  # [B, 3, R, R] in [0, 1]
            x = torch.nn.functional.interpolate(
                x, size=(299, 299), mode="bilinear", align_corners=False
            )  # [B, 3, 299, 299]
            out.append(extractor(x))  # [B, 2048]
            bar.update(len(chunk))
    return np.concatenate(out)  # [num, 2048]


def generator_stats(
    network: str | os.PathLike,
    sampling: GeneratorSamplingConfig,
    extractor: InceptionExtractor,
    config: FIDConfig,
    device: torch.device,
) -> tuple[FeatureStats, bool]:
    """Statistics of ``sampling.num`` images of the generator in ``network``: ``(stats, from_cache)``."""
    from realface.checkpoints import load_generator, resolve_network_path
    from realface.weights import cache_dir, sha256_file

    path = resolve_network_path(network)
    key = _key(
        {
            "protocol": STATS_PROTOCOL,
            "inception": extractor.identity,
            "kind": "generator",
            "network": sha256_file(path, root=cache_dir()),
            "which": sampling.which,
            "num": sampling.num,
            "seed0": sampling.seed0,
            "truncation_psi": sampling.truncation_psi,
            "noise_mode": sampling.noise_mode,
            "batch_size": config.batch_size,
        }
    )

    def compute() -> FeatureStats:
        G = load_generator(path, device=device, which=sampling.which)
        feats = generator_features(G, sampling, extractor, config, device)
        return stats_from_features(feats, source=f"{path} ({sampling.num} images)")

    return _cached(key, config.use_cache, compute)


@dataclass(frozen=True)
class FIDResult:
    """One FID value and what it was computed from.

    Attributes:
        metric: upstream-style name (:func:`fid_metric_name`): ``fid_full`` or ``fid50k_full`` etc.
        fid: the distance.
        num_a, num_b: images (feature vectors) in each set.
        source_a, source_b: what the sets were (folder, ``.npz`` or generator description).
        cached_a, cached_b: whether each set's statistics came from the cache.
        method: ``"sqrtm"`` or ``"low-rank"`` (:func:`fid_from_stats`).
    """

    metric: str
    fid: float
    num_a: int
    num_b: int
    source_a: str
    source_b: str
    cached_a: bool
    cached_b: bool
    method: str = "sqrtm"

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "fid": self.fid,
            "num_a": self.num_a,
            "num_b": self.num_b,
            "source_a": self.source_a,
            "source_b": self.source_b,
            "cached_a": self.cached_a,
            "cached_b": self.cached_b,
            "method": self.method,
            "protocol": STATS_PROTOCOL,
        }


def compute_fid(
    reference: str | os.PathLike,
    other: str | os.PathLike | None = None,
    *,
    network: str | os.PathLike | None = None,
    sampling: GeneratorSamplingConfig | None = None,
    config: FIDConfig | None = None,
    extractor: InceptionExtractor | None = None,
) -> FIDResult:
    """FID between the images of ``reference`` and those of ``other`` or of the generator ``network``.

    Args:
        reference: a folder of images (or an ``.npz`` of statistics).
        other: a second folder (or ``.npz``); give exactly one of ``other`` and ``network``.
        network: a generator file (official ``.pkl``, realface ``.safetensors``) or a weights id.
        sampling: how the generator is sampled (default :class:`GeneratorSamplingConfig`: 50000 images,
            seeds 0…, psi 1, random noise).
        config: :class:`FIDConfig`.
        extractor: the feature extractor; default the real FID Inception on ``config.device``.

    Returns:
        :class:`FIDResult`. The protocol is in the module docstring.
    """
    from realface.utils.device import resolve_device

    if (other is None) == (network is None):
        raise ConfigError("give either a second folder or --network (a generator), not both / neither")
    config = config or FIDConfig()
    device = resolve_device(config.device)
    extractor = extractor or InceptionExtractor.load(device)
    stats_a, cached_a = folder_stats(reference, extractor, config)
    if network is not None:
        sampling = sampling or GeneratorSamplingConfig()
        stats_b, cached_b = generator_stats(network, sampling, extractor, config, device)
        metric = fid_metric_name(sampling.num)
        source_b = f"{network} ({sampling.num} images, seeds {sampling.seed0}+, psi {sampling.truncation_psi:g}, noise {sampling.noise_mode})"
    else:
        assert other is not None
        stats_b, cached_b = folder_stats(other, extractor, config)
        metric = fid_metric_name(None)
        source_b = str(other)
    fid, method = fid_from_stats(stats_a, stats_b)
    log.info("%s = %.4f (%d vs %d images)", metric, fid, stats_a.num, stats_b.num)
    return FIDResult(
        metric=metric,
        fid=fid,
        num_a=stats_a.num,
        num_b=stats_b.num,
        source_a=str(reference),
        source_b=source_b,
        cached_a=cached_a,
        cached_b=cached_b,
        method=method,
    )
