"""Sampling images from a generator by seed, as the official ``generate.py`` does.

``z_from_seed(seed)`` reproduces the official latent for a seed (``RandomState(seed).randn(1, z_dim)``),
so ``realface generate --seeds 0-7`` gives the same images as the official tool for the same network.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from realface.errors import ConfigError
from realface.nn.stylegan2 import Generator

__all__ = ["SampleConfig", "parse_seeds", "z_from_seed", "to_uint8", "make_grid", "generate"]


def parse_seeds(spec: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]. Ranges are inclusive; see :func:`realface.options.parse_seeds`."""
    from realface.options import parse_seeds as _parse

    return _parse(spec, what="--seeds")


def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """The official generate.py latent for ``seed``: [1, z_dim] float32."""
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be in [0, 2**32), got {seed}")
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim)).to(torch.float32)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] (official rounding: ``x * 127.5 + 128``, clamped)."""
    if img.ndim != 4:
        raise ValueError(f"expected [N, C, H, W], got {tuple(img.shape)}")
    x = (img.detach().to(torch.float32) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def make_grid(images: Sequence[np.ndarray], cols: int | None = None) -> np.ndarray:
    """Tile equally sized uint8 [H, W, C] images into one [rows*H, cols*W, C] image (black padding)."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    h, w, c = images[0].shape
    cols = cols or int(np.ceil(np.sqrt(len(images))))
    rows = int(np.ceil(len(images) / cols))
    grid = np.zeros((rows * h, cols * w, c), np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        grid[r * h : (r + 1) * h, q * w : (q + 1) * w] = im
    return grid


@dataclass(frozen=True)
class SampleConfig:
    """Options of ``realface generate`` (defaults as the official generate.py)."""

    seeds: tuple[int, ...]
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    noise_mode: str = "const"
    class_idx: int | None = None


def generate(
    G: Generator, cfg: SampleConfig, device: torch.device | str = "cpu"
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (seed, uint8 [H, W, C]) for each seed."""
    if cfg.noise_mode not in ("random", "const", "none"):
        raise ConfigError(f"noise mode must be random, const or none; got {cfg.noise_mode!r}")
    c = None
    if G.c_dim > 0:
        if cfg.class_idx is None:
            raise ConfigError(f"this generator is conditional ({G.c_dim} classes): give --class")
        if not 0 <= cfg.class_idx < G.c_dim:
            raise ConfigError(f"--class must be in [0, {G.c_dim}), got {cfg.class_idx}")
        c = torch.zeros(1, G.c_dim, device=device)
        c[0, cfg.class_idx] = 1
    elif cfg.class_idx is not None:
        raise ConfigError("--class given, but this generator is unconditional")
    G = G.to(device).eval()
    for seed in cfg.seeds:
        z = z_from_seed(seed, G.z_dim).to(device)
        with torch.no_grad():
            img = G(
                z,
                c,
                truncation_psi=cfg.truncation_psi,
                truncation_cutoff=cfg.truncation_cutoff,
                noise_mode=cfg.noise_mode,
            )
        yield seed, to_uint8(img)[0]
