"""The trained toy world: a small StyleGAN2-ADA ``G_real`` that has learned the procedural photo faces.

:func:`build_world` makes, from nothing but :mod:`realface.bench.faces`, four networks:

1. ``G_real`` (stored as ``G_ema``): the official generator architecture at 64 px, trained by
   *regression* onto ``render_photo(params_from_z(z))`` — every latent has a known target, so the
   latent space is smooth and organised by the face parameters from the start (L1 loss, Adam, an EMA
   of the weights). A short *adversarial* phase then trains a discriminator ``D`` against it (non-
   saturating logistic loss, R1) while G keeps its regression loss plus a small adversarial term, so
   fine-tuning starts from a matched G/D pair as it does from an official training snapshot.
2. ``D``: that discriminator.
3. ``G_oracle``: ``G_real`` fine-tuned by regression onto ``render_cg(params_from_z(z))`` with the
   mapping network and every ToRGB layer frozen (as :mod:`realface.train` freezes them): the exact
   rendering-style generator of this world, sharing ``G_real``'s W+ space; the benchmark's upper bound.
4. A parameter regressor (:class:`ParamRegressor`): a small CNN that reads the face parameters back
   from an image, trained on photo and CG renders alike; the world's identity measure.

The networks go to ``OUT/toyworld.safetensors`` (realface's network format) and
``OUT/toyworld_regressor.safetensors``; ``OUT/toyworld.json`` records the configuration, the losses
and the time each phase took. The job is resumable: a state file is written every few minutes and
after each phase, and rerunning the same command continues from it. Every random draw comes from
generators seeded by ``WorldConfig.seed``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from realface.bench.faces import IDENTITY_PARAMS, NUM_PARAMS, params_from_z, render_cg, render_photo
from realface.errors import CheckpointError, ConfigError
from realface.nn.stylegan2 import Discriminator, Generator
from realface.precision import cpu_has_bf16
from realface.utils.fs import atomic_path, atomic_write_text
from realface.utils.weightfile import read_torch_object

__all__ = [
    "WorldConfig",
    "ParamRegressor",
    "World",
    "build_world",
    "load_world",
    "default_world_path",
    "cpu_has_bf16",
]

log = logging.getLogger(__name__)

_WORLD_STATE_KEYS = frozenset(
    {
        "config",
        "current",
        "phases",
        "G",
        "G_ema",
        "D",
        "reg",
        "opt_G",
        "opt_D",
        "opt_reg",
        "gen",
        "torch_rng",
        "oracle",
    }
)
"""Entries of a toy-world resume state (``world_state.pt``), all written together."""

WORLD_FILE = "toyworld.safetensors"
REGRESSOR_FILE = "toyworld_regressor.safetensors"
INFO_FILE = "toyworld.json"


def default_world_path() -> Path:
    """The world shipped with realface (``realface/bench/data``), made by ``realface bench world``."""
    return Path(__file__).parent / "data"


@dataclass(frozen=True)
class WorldConfig:
    """How the toy world is made (saved in ``toyworld.json``).

    res / z_dim / w_dim / mapping_layers / mapping_lr_multiplier / channel_base / channel_max: the
    generator (official architecture; ``z_dim`` ≥ the number of face parameters). The mapping learns
    at the full rate (multiplier 1, not the official 0.01) and has 2 layers: with the official values
    the regression converged about 4x slower here (L1 0.139 after 825 steps against 200 steps). batch: images per step. *_kimg: length
    of each phase in thousands of images. lr: Adam learning rate of the regression phases. adv_weight:
    weight of the adversarial term next to L1 in the adversarial phase; r1_gamma: R1 weight of D.
    ema_kimg: half-life of G's weight average. precision: "bf16" (CPU autocast, where the CPU has
    AVX512_BF16/AMX), "fp32", or "auto" (bf16 where supported). threads: torch threads (0: torch's
    default).
    """

    res: int = 32
    z_dim: int = 32
    w_dim: int = 128
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 1.0
    channel_base: int = 4096
    channel_max: int = 64
    batch: int = 32
    regress_kimg: float = 96.0
    adv_kimg: float = 2.0
    oracle_kimg: float = 8.0
    regressor_kimg: float = 40.0
    lr: float = 6e-3
    adv_weight: float = 0.02
    r1_gamma: float = 0.05
    ema_kimg: float = 2.0
    precision: str = "auto"
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.z_dim < NUM_PARAMS:
            raise ConfigError(
                f"z_dim must be >= {NUM_PARAMS} (the number of face parameters), got {self.z_dim}"
            )
        if self.res not in (16, 32, 64, 128):
            raise ConfigError(f"res must be 16, 32, 64 or 128, got {self.res}")
        for name in ("regress_kimg", "adv_kimg", "oracle_kimg", "regressor_kimg", "lr", "ema_kimg"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {v}")
        if self.batch < 2:
            raise ConfigError(f"batch must be >= 2, got {self.batch}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")

    @classmethod
    def quick(cls) -> WorldConfig:
        """A tiny world for tests (seconds): 32 px, few channels, a few hundred images per phase."""
        return cls(
            res=32,
            w_dim=32,
            mapping_layers=2,
            channel_base=256,
            channel_max=32,
            batch=8,
            regress_kimg=0.08,
            adv_kimg=0.016,
            oracle_kimg=0.016,
            regressor_kimg=0.08,
        )

    def generator_kwargs(self) -> dict:
        return dict(
            z_dim=self.z_dim,
            c_dim=0,
            w_dim=self.w_dim,
            img_resolution=self.res,
            img_channels=3,
            mapping_kwargs={"num_layers": self.mapping_layers, "lr_multiplier": self.mapping_lr_multiplier},
            synthesis_kwargs=dict(
                channel_base=self.channel_base, channel_max=self.channel_max, num_fp16_res=0, conv_clamp=256
            ),
        )

    def discriminator_kwargs(self) -> dict:
        return dict(
            c_dim=0,
            img_resolution=self.res,
            img_channels=3,
            channel_base=self.channel_base,
            channel_max=self.channel_max,
            conv_clamp=256,
            epilogue_kwargs={"mbstd_group_size": 4},
        )


class ParamRegressor(nn.Module):
    """Image [N, 3, R, R] in [-1, 1] -> face parameters [N, NUM_PARAMS] in (0, 1). A plain CNN."""

    def __init__(self, res: int = 64, width: int = 32) -> None:
        super().__init__()
        self.res, self.width = res, width
        layers: list[nn.Module] = []
        ch, r = 3, res
        for i in range(int(math.log2(res)) - 2):  # down to 4x4
            out = min(width * 2**i, 256)
            layers += [
                nn.Conv2d(ch, out, 3, 2, 1),
                nn.LeakyReLU(0.2),
                nn.Conv2d(out, out, 3, 1, 1),
                nn.LeakyReLU(0.2),
            ]
            ch, r = out, r // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(ch * r * r, 256), nn.LeakyReLU(0.2), nn.Linear(256, NUM_PARAMS)
        )

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"expected [N, 3, H, W] images, got {tuple(img.shape)}")
        if img.shape[-1] != self.res or img.shape[-2] != self.res:
            img = F.interpolate(img, size=(self.res, self.res), mode="area")
        return torch.sigmoid(self.head(self.features(img)))

    def identity_error(self, img: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Mean absolute error [N] of the identity parameters read from ``img`` against ``params``."""
        idx = list(IDENTITY_PARAMS)
        return (self(img)[:, idx] - params[:, idx]).abs().mean(1)


@dataclass
class World:
    """The loaded world: ``G_real``, ``D``, ``G_oracle`` (eval mode) and the parameter regressor."""

    G_real: Generator
    D: Discriminator
    G_oracle: Generator
    regressor: ParamRegressor
    path: Path
    info: dict


def load_world(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> World:
    """Load a world folder written by :func:`build_world` (default: the one shipped with realface)."""
    from realface.checkpoints import load_discriminator, load_generator

    folder = Path(path) if path is not None else default_world_path()
    net_file, reg_file, info_file = folder / WORLD_FILE, folder / REGRESSOR_FILE, folder / INFO_FILE
    for f in (net_file, reg_file, info_file):
        if not f.is_file():
            raise CheckpointError(
                f"{f}: missing; the toy world is made by `realface bench world -o {folder}` (about 1-2 h on a CPU)"
            )
    try:
        info = json.loads(info_file.read_text())
        reg_args = info["regressor"]
        reg = ParamRegressor(res=int(reg_args["res"]), width=int(reg_args["width"]))
        state = load_file(str(reg_file))
        reg.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{folder}: not a toy world made by `realface bench world` ({exc})") from exc
    return World(
        G_real=load_generator(net_file, device, which="G_ema"),
        D=load_discriminator(net_file, device),
        G_oracle=load_generator(net_file, device, which="G_oracle"),
        regressor=reg.eval().requires_grad_(False).to(device),
        path=folder,
        info=info,
    )


# ----------------------------------------------------------------------------------------------


def _ema_update(ema: nn.Module, net: nn.Module, beta: float) -> None:
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
            pe.lerp_(p.detach(), 1 - beta)
        for be, b in zip(ema.buffers(), net.buffers(), strict=True):
            be.copy_(b)


def _lr_factor(t: float) -> float:
    """Constant, then a cosine decay to 5 % over the last 40 % of a phase (``t`` in [0, 1])."""
    if t < 0.6:
        return 1.0
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (t - 0.6) / 0.4))


class _Phase:
    """Bookkeeping of one resumable phase: iteration counter, timing, a loss log."""

    def __init__(self, name: str, kimg: float, batch: int) -> None:
        self.name = name
        self.total = max(1, int(round(kimg * 1000 / batch))) if kimg > 0 else 0
        self.it = 0
        self.seconds = 0.0
        self.losses: list[float] = []

    def state(self) -> dict:
        return {"name": self.name, "it": self.it, "seconds": self.seconds, "losses": self.losses[-2000:]}

    def load(self, st: dict) -> None:
        self.it, self.seconds, self.losses = int(st["it"]), float(st["seconds"]), list(st["losses"])


def build_world(
    out: str | os.PathLike,
    cfg: WorldConfig = WorldConfig(),
    progress: Callable[[str, int, int, float], None] | None = None,
    checkpoint_seconds: float = 300.0,
) -> Path:
    """Make the toy world into ``out`` (see the module docstring); returns ``out``.

    ``progress(phase, iteration, total, loss)`` is called every iteration. Rerunning with the same
    ``cfg`` resumes from ``out/world_state.pt``; a different ``cfg`` there is refused.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cpu_has_bf16())
    state_file = out / "world_state.pt"
    cfg_dict = dataclasses.asdict(cfg)

    torch.manual_seed(cfg.seed)
    G = Generator(**cfg.generator_kwargs()).train()
    D = Discriminator(**cfg.discriminator_kwargs()).train()
    reg = ParamRegressor(res=cfg.res)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    G_oracle: Generator | None = None
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(0.0, 0.99))
    opt_reg = torch.optim.Adam(reg.parameters(), lr=1e-3)
    phases = {
        "regress": _Phase("regress", cfg.regress_kimg, cfg.batch),
        "adversarial": _Phase("adversarial", cfg.adv_kimg, cfg.batch),
        "oracle": _Phase("oracle", cfg.oracle_kimg, cfg.batch),
        "regressor": _Phase("regressor", cfg.regressor_kimg, cfg.batch * 2),
    }
    gen = torch.Generator().manual_seed(cfg.seed + 1)

    def save_state(current: str) -> None:
        st = {
            "config": json.dumps(cfg_dict, sort_keys=True),
            "current": current,
            "phases": json.dumps({k: p.state() for k, p in phases.items()}),
            "G": G.state_dict(),
            "G_ema": G_ema.state_dict(),
            "D": D.state_dict(),
            "reg": reg.state_dict(),
            "opt_G": opt_G.state_dict(),
            "opt_D": opt_D.state_dict(),
            "opt_reg": opt_reg.state_dict(),
            "gen": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "oracle": None if G_oracle is None else G_oracle.state_dict(),
        }
        with atomic_path(state_file) as tmp:
            torch.save(st, tmp)

    if state_file.is_file():
        try:
            st = read_torch_object(state_file, "toy-world state")
        except CheckpointError as exc:
            raise CheckpointError(f"{exc}; unreadable world state, delete it to start again") from None
        if not isinstance(st, dict) or not _WORLD_STATE_KEYS <= set(st):
            raise CheckpointError(
                f"{state_file}: not a toy-world state (expected a dict with {sorted(_WORLD_STATE_KEYS)}); "
                "delete it to start again"
            )
        if json.loads(st["config"]) != cfg_dict:
            raise ConfigError(f"{state_file}: was made with other settings; use another -o or delete it")
        G.load_state_dict(st["G"])
        G_ema.load_state_dict(st["G_ema"])
        D.load_state_dict(st["D"])
        reg.load_state_dict(st["reg"])
        opt_D.load_state_dict(st["opt_D"])
        opt_reg.load_state_dict(st["opt_reg"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])
        for k, v in json.loads(st["phases"]).items():
            phases[k].load(v)
        if st["oracle"] is not None:
            G_oracle = copy.deepcopy(G_ema)
            G_oracle.load_state_dict(st["oracle"])
            G_oracle.train().requires_grad_(True)
            frozen_off(G_oracle)
            opt_G = torch.optim.Adam(
                [p for p in G_oracle.parameters() if p.requires_grad], lr=cfg.lr, betas=(0.9, 0.99)
            )
        opt_G.load_state_dict(st["opt_G"])
        log.info("resuming the toy world from %s", state_file)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def z_batch(n: int) -> torch.Tensor:
        return torch.randn([n, cfg.z_dim], generator=gen)

    last_save = time.time()
    ema_beta = 0.5 ** (cfg.batch / max(cfg.ema_kimg * 1000, 1e-8))

    def step_done(ph: _Phase, loss: float, t0: float, current: str) -> None:
        nonlocal last_save
        ph.it += 1
        ph.seconds += time.time() - t0
        ph.losses.append(loss)
        if progress is not None:
            progress(ph.name, ph.it, ph.total, loss)
        if time.time() - last_save > checkpoint_seconds:
            save_state(current)
            last_save = time.time()

    # 1. Regression of G onto the photo renders.
    ph = phases["regress"]
    while ph.it < ph.total:
        t0 = time.time()
        for g in opt_G.param_groups:
            g["lr"] = cfg.lr * _lr_factor(ph.it / ph.total)
        z = z_batch(cfg.batch)
        target = render_photo(params_from_z(z), cfg.res)  # [N, 3, R, R]
        with autocast():
            img = G(z, None, noise_mode="random")
        loss = (img.float() - target).abs().mean()
        opt_G.zero_grad(set_to_none=True)
        loss.backward()
        opt_G.step()
        _ema_update(G_ema, G, ema_beta)
        step_done(ph, float(loss.detach()), t0, "regress")

    # 2. Adversarial phase: D learns; G keeps the regression loss plus a small adversarial term.
    ph = phases["adversarial"]
    if ph.it == 0 and ph.total > 0:
        for g in opt_G.param_groups:
            g["lr"] = cfg.lr * 0.1
    while ph.it < ph.total:
        t0 = time.time()
        z = z_batch(cfg.batch)
        real = render_photo(params_from_z(z_batch(cfg.batch)), cfg.res)
        with torch.no_grad(), autocast():
            fake = G(z, None, noise_mode="random").float()
        real.requires_grad_(ph.it % 4 == 0)
        with autocast():
            d_real = D(real, None).float()
            d_fake = D(fake, None).float()
        loss_D = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
        if real.requires_grad:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            loss_D = loss_D + grad.float().square().sum([1, 2, 3]).mean() * (cfg.r1_gamma / 2) * 4
        opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        opt_D.step()
        target = render_photo(params_from_z(z), cfg.res)
        D.requires_grad_(False)
        with autocast():
            img = G(z, None, noise_mode="random")
            adv = F.softplus(-D(img, None).float()).mean()
        D.requires_grad_(True)
        rec = (img.float() - target).abs().mean()
        loss = rec + cfg.adv_weight * adv
        opt_G.zero_grad(set_to_none=True)
        loss.backward()
        opt_G.step()
        _ema_update(G_ema, G, ema_beta)
        step_done(ph, float(rec.detach()), t0, "adversarial")

    # w_avg of G_real: the mean of the mapping over many latents (as the official w_avg tracks).
    with torch.no_grad():
        wg = torch.Generator().manual_seed(cfg.seed + 7)
        ws = G_ema.mapping(torch.randn([20000, cfg.z_dim], generator=wg), None, skip_w_avg_update=True)
        G_ema.mapping.w_avg.copy_(ws[:, 0].mean(0))

    # 3. The oracle: G_real regressed onto the CG renders, mapping and ToRGB frozen.
    ph = phases["oracle"]
    if G_oracle is None:
        G_oracle = copy.deepcopy(G_ema).train().requires_grad_(True)
        frozen_off(G_oracle)
        opt_G = torch.optim.Adam(
            [p for p in G_oracle.parameters() if p.requires_grad], lr=cfg.lr * 0.5, betas=(0.9, 0.99)
        )
    while ph.it < ph.total:
        t0 = time.time()
        for g in opt_G.param_groups:
            g["lr"] = cfg.lr * 0.5 * _lr_factor(ph.it / ph.total)
        z = z_batch(cfg.batch)
        target = render_cg(params_from_z(z), cfg.res)
        with autocast():
            img = G_oracle(z, None, noise_mode="random")
        loss = (img.float() - target).abs().mean()
        opt_G.zero_grad(set_to_none=True)
        loss.backward()
        opt_G.step()
        step_done(ph, float(loss.detach()), t0, "oracle")

    # 4. The parameter regressor, on photo and CG renders alike.
    ph = phases["regressor"]
    while ph.it < ph.total:
        t0 = time.time()
        for g in opt_reg.param_groups:
            g["lr"] = 1e-3 * _lr_factor(ph.it / ph.total)
        p = params_from_z(z_batch(cfg.batch * 2))
        imgs = torch.cat([render_photo(p[: cfg.batch], cfg.res), render_cg(p[cfg.batch :], cfg.res)])
        with autocast():
            pred = reg(imgs)
        loss = (pred.float() - p).square().mean()
        opt_reg.zero_grad(set_to_none=True)
        loss.backward()
        opt_reg.step()
        step_done(ph, float(loss.detach()), t0, "regressor")
    save_state("done")

    # Write the world.
    from realface.checkpoints import save_networks

    G_oracle.eval().requires_grad_(False)
    save_networks(
        {"G_ema": G_ema, "D": D.eval(), "G_oracle": G_oracle},
        out / WORLD_FILE,
        metadata={"realface_toy_world": json.dumps(cfg_dict, sort_keys=True)},
    )
    with atomic_path(out / REGRESSOR_FILE) as tmp:
        save_file({k: v.contiguous() for k, v in reg.state_dict().items()}, str(tmp))
    summary: dict[str, Any] = {
        "made_by": "realface bench world",
        "config": cfg_dict,
        "bf16": bf16,
        "torch": torch.__version__,
        "regressor": {"res": reg.res, "width": reg.width},
        "phases": {
            k: {
                "iterations": p.it,
                "kimg": p.it * (cfg.batch * 2 if k == "regressor" else cfg.batch) / 1000,
                "seconds": round(p.seconds, 1),
                "final_loss": (sum(p.losses[-50:]) / max(len(p.losses[-50:]), 1)) if p.losses else None,
            }
            for k, p in phases.items()
        },
    }
    summary["seconds"] = round(sum(p["seconds"] for p in summary["phases"].values()), 1)
    atomic_write_text(out / INFO_FILE, json.dumps(summary, indent=2) + "\n")
    state_file.unlink(missing_ok=True)
    return out


def frozen_off(G: Generator) -> None:
    """Turn gradients off for the parameters fine-tuning keeps frozen (mapping and ToRGB)."""
    from realface.train.loop import frozen_parameter_names

    frozen = set(frozen_parameter_names(G))
    for name, p in G.named_parameters():
        p.requires_grad_(name not in frozen)
