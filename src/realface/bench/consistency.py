"""The paper's identity-consistency protocol (Table 1) in the toy world, where identity is measurable.

The paper feeds the same latents through ``G_real`` and ``G_rendering`` and scores the identity
similarity of the pairs with a face-recognition network. Procedural faces are invisible to such
networks, but the toy world knows every face's parameters, so identity is measured directly:

- ``param_error``: the world's regressor reads the identity parameters of ``G_rendering(z)`` and of
  ``G_real(z)``; the mean absolute difference between the two (0: the same person), in units of the
  parameters' [0, 1] ranges. ``param_error_truth`` compares ``G_rendering(z)`` with the parameters
  ``params_from_z(z)`` that ``G_real`` was trained to draw.
- ``lpips`` / ``l2``: between ``G_rendering(z)`` and the CG rendering of ``G_real(z)``'s face,
  ``render_cg(params_from_z(z))``: how close G_rendering comes to the right person in the right style.

Latents are the official ``generate.py`` ones (``RandomState(seed).randn``) for seeds ``seed0 …``,
ψ = 1, constant noise.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from realface.bench.faces import IDENTITY_PARAMS, params_from_z, render_cg
from realface.bench.world import World
from realface.nn.stylegan2 import Generator

__all__ = ["toy_consistency"]

PROTOCOL = "toy-consistency: same z (generate.py seeds), psi 1, const noise; regressor parameter error"


def toy_consistency(
    world: World,
    G_rendering: Generator,
    num: int = 2000,
    seed0: int = 0,
    batch: int = 64,
    lpips: torch.nn.Module | None = None,
) -> dict:
    """Scores of ``G_rendering`` against the world's ``G_real`` on ``num`` shared latents.

    Returns a dict with the protocol name, ``num``, and for each measure its mean and 95 % interval
    (``{"mean": m, "ci95": [lo, hi]}``): ``param_error``, ``param_error_truth``, ``l2`` and, when
    ``lpips`` is given, ``lpips``. ``param_error_real_truth`` is the same regressor's error on
    ``G_real(z)`` itself (how well G_real draws the face it was taught: the measure's floor).
    """
    from realface.metrics.consistency import mean_ci
    from realface.sampling import z_from_seed

    if num < 2:
        raise ValueError(f"num must be >= 2, got {num}")
    G_real, reg = world.G_real, world.regressor
    values: dict[str, list[float]] = {
        k: [] for k in ("param_error", "param_error_truth", "param_error_real_truth", "l2")
    }
    if lpips is not None:
        values["lpips"] = []
    seeds = list(range(seed0, seed0 + num))
    with torch.no_grad():
        for s in range(0, num, batch):
            z = torch.cat([z_from_seed(k, G_real.z_dim) for k in seeds[s : s + batch]])  # [B, z_dim]
            ws = G_real.mapping(z, None)  # [B, num_ws, w_dim]; both generators share the mapping
            a = G_real.synthesis(ws, noise_mode="const").clamp(-1, 1)  # [B, 3, R, R]
            b = G_rendering.synthesis(ws, noise_mode="const").clamp(-1, 1)  # [B, 3, R, R]
            p = params_from_z(z)  # [B, P]
            cg = render_cg(p, G_real.img_resolution)  # [B, 3, R, R]
            pa, pb = reg(a), reg(b)  # [B, P]
            idx = list(IDENTITY_PARAMS)
            values["param_error"] += (pa[:, idx] - pb[:, idx]).abs().mean(1).tolist()
            values["param_error_truth"] += (pb[:, idx] - p[:, idx]).abs().mean(1).tolist()
            values["param_error_real_truth"] += (pa[:, idx] - p[:, idx]).abs().mean(1).tolist()
            values["l2"] += ((b + 1) / 2 - (cg + 1) / 2).square().mean(dim=[1, 2, 3]).tolist()
            if lpips is not None:
                values["lpips"] += lpips(b, cg).flatten().tolist()
    out: dict = {"protocol": PROTOCOL, "num": num, "seed0": seed0}
    for k, v in values.items():
        m, lo, hi = mean_ci(np.asarray(v))
        out[k] = {"mean": m, "ci95": [lo, hi] if math.isfinite(lo) else None}
    return out
