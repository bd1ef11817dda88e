"""Fine-tuning G_rendering from G_real (paper Sec. 3.2 and 4.1): the training loop.

G_rendering starts as a copy of G_real. The mapping network and every ToRGB layer are **frozen**
(not in the optimiser, bit-identical after training), so G_rendering and G_real share one W+ space;
``freeze_res`` freezes the coarse synthesis blocks too.
The objective is StyleGAN2-ADA's (lazy R1 and path-length regularisation, style mixing, Adam with
betas (0, 0.99) and the lazy-regularisation adjustment, G EMA, ADA) plus the paper's identity losses
(:mod:`realface.train.loss`). Defaults are the paper's: batch 32, lr 0.002, x-flip, ADA, 40 kimg.

Runs are folders: ``training_options.json`` (the resolved :class:`TrainConfig`), ``stats.jsonl``
(one line per tick), ``fakes*.png`` (fixed latents: G_real's image above G_rendering's, so identity
consistency is visible at a glance), and ``checkpoints/ckpt-<nimg>/`` (networks, optimiser states, ADA
p, RNG states, counters and the config), written atomically, the last ``keep`` kept. ``resume``
continues exactly where a checkpoint left off.

Several processes (``torchrun``): each takes ``batch / world`` samples of every global batch (the
same random draws on every process, sliced), gradients and ADA statistics are averaged with
``all_reduce`` (NCCL on GPU, gloo on CPU) and rank 0 writes the run folder.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

from realface.checkpoints import load_discriminator, load_generator, save_networks
from realface.errors import CheckpointError, ConfigError
from realface.losses import IdentityLossConfig, build_sketch_for
from realface.nn.stylegan2 import Discriminator, Generator
from realface.train.checkpoint import Checkpoint, check_matches, read_checkpoint
from realface.train.dataset import default_workers
from realface.train.loss import LossWeights, StyleGAN2Loss, draw
from realface.utils.fs import atomic_dir, atomic_path, atomic_write_text, is_temporary

__all__ = ["TrainConfig", "Trainer", "frozen_parameter_names", "latest_checkpoint", "export_generator"]

log = logging.getLogger(__name__)

CKPT_RE = re.compile(r"^ckpt-(\d{9})$")


@dataclass(frozen=True)
class TrainConfig:
    """Every option of ``realface train`` (saved as ``training_options.json`` and in each checkpoint).

    Paper defaults: batch 32, lr 0.002, γ 10 (1024²), λs 5e-6, λc 3.75e3, x-flip, ADA, 40 kimg.
    ada_kimg is 100 (the official value when starting from a trained network). kimg_per_tick: images
    between two stats lines; snap: ticks between checkpoints and snapshot grids; keep: checkpoints
    kept. g_lr / d_lr: per-network learning rates (default ``lr``). identity: λs, λc and the other
    settings of the identity losses (:class:`realface.losses.IdentityLossConfig`, validated there).
    freeze_res: synthesis blocks at or below this resolution are frozen too (0, the paper: none; 8
    keeps the 4² and 8² blocks, the coarse geometry, of G_real). precision: "fp32", or on CUDA "fp16" (the official float16 blocks with conv_clamp 256) or
    "bf16" (autocast). lpips_vgg: a VGG16 state dict for the colour loss instead of the cached one.
    workers: data loader processes (default ``min(3, CPUs - 1)``, see
    :func:`realface.train.dataset.default_workers`). An invalid value raises :class:`ConfigError`
    whose ``field`` names the option at fault.
    """

    data: str
    real: str
    out: str = "runs/realface"
    kimg: float = 40.0
    batch: int = 32
    lr: float = 0.002
    g_lr: float | None = None
    d_lr: float | None = None
    gamma: float = 10.0
    identity: IdentityLossConfig = dataclasses.field(default_factory=IdentityLossConfig)
    pl_weight: float = 2.0
    style_mixing: float = 0.9
    ema_kimg: float = 10.0
    G_reg_interval: int = 4
    D_reg_interval: int = 16
    ada: bool = True
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 100.0
    augment_p: float = 0.0
    xflip: bool = True
    kimg_per_tick: float = 4.0
    snap: int = 5
    keep: int = 3
    seed: int = 0
    workers: int = dataclasses.field(default_factory=default_workers)
    allow_random_d: bool = False
    precision: str = "fp32"
    lpips_vgg: str | None = None
    grid_size: int = 8
    freeze_res: int = 0

    def __post_init__(self) -> None:
        from realface.options import check_finite

        check_finite(self)

        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ConfigError(f"{name} {rule}, got {getattr(self, name)!r}", field=name)

        for name in (
            "batch",
            "G_reg_interval",
            "D_reg_interval",
            "ada_interval",
            "snap",
            "keep",
            "grid_size",
        ):
            need(getattr(self, name) >= 1, name, "must be >= 1")
        for name in ("kimg", "lr", "kimg_per_tick", "ada_kimg"):
            need(getattr(self, name) > 0, name, "must be > 0")
        for name in ("g_lr", "d_lr"):
            need(getattr(self, name) is None or getattr(self, name) > 0, name, "must be > 0")
        for name in ("gamma", "pl_weight", "ema_kimg", "workers", "seed"):
            need(getattr(self, name) >= 0, name, "must be >= 0")
        for name in ("style_mixing", "ada_target", "augment_p"):
            need(0 <= getattr(self, name) <= 1, name, "must be in [0, 1]")
        need(self.precision in ("fp32", "fp16", "bf16"), "precision", "must be fp32, fp16 or bf16")
        need(
            self.freeze_res == 0 or (self.freeze_res >= 4 and self.freeze_res & (self.freeze_res - 1) == 0),
            "freeze_res",
            "must be 0 or a power of two >= 4",
        )
        if not isinstance(self.identity, IdentityLossConfig):
            raise ConfigError(
                f"identity must be an IdentityLossConfig, got {type(self.identity).__name__}",
                field="identity",
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able dict saved as ``training_options.json`` (``identity`` nested)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The config of a saved :meth:`to_dict` dict, also of runs saved before the identity settings
        were grouped: their flat keys (``sketch_weight``, ``color_weight``, ``sketch_extractor``,
        ``sketch_reduction``) become the fields of :attr:`identity`.

        Raises:
            ConfigError: a key is unknown, or a value is invalid (``field`` names it).
        """
        values = dict(data)
        identity = values.pop("identity", None)
        identity = dict(identity) if isinstance(identity, Mapping) else {}
        for key in _FLAT_IDENTITY_KEYS:
            if key in values:
                identity.setdefault(key, values.pop(key))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown training option {unknown[0]!r}", field=unknown[0])
        return cls(**values, identity=IdentityLossConfig.from_dict(identity))


# Keys of saved configs from before ``TrainConfig.identity``: they belong to the identity settings now.
_FLAT_IDENTITY_KEYS = ("sketch_weight", "color_weight", "sketch_extractor", "sketch_reduction")


def frozen_parameter_names(G: Generator, freeze_res: int = 0) -> list[str]:
    """Parameters that fine-tuning never changes: the mapping network, every ToRGB layer and, with
    ``freeze_res``, every synthesis block at or below that resolution (``synthesis.b4.*``, ...)."""
    blocks = tuple(f"synthesis.b{r}." for r in G.synthesis.block_resolutions if r <= freeze_res)
    return [
        n
        for n, _ in G.named_parameters()
        if n.startswith("mapping.") or ".torgb." in n or (blocks and n.startswith(blocks))
    ]


def latest_checkpoint(run: str | os.PathLike) -> Path:
    """The newest complete checkpoint of a run folder (or the checkpoint folder itself)."""
    run = Path(run)
    if (run / "networks.safetensors").is_file() and (run / "state.json").is_file():
        return run
    found = sorted(
        p
        for p in (run / "checkpoints").glob("ckpt-*")
        if CKPT_RE.match(p.name) and (p / "state.json").is_file() and (p / "networks.safetensors").is_file()
    )
    if not found:
        raise CheckpointError(f"{run}: no complete checkpoint found (expected checkpoints/ckpt-NNNNNNNNN/)")
    return found[-1]


def export_generator(run: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write the G_ema of a run's latest checkpoint as the G_rendering file that ``apply`` uses."""
    ckpt = read_checkpoint(latest_checkpoint(run))
    G_ema = ckpt.records["G_ema"].build()
    state = ckpt.state
    meta = {"source_run": str(run), "kimg": f"{state['cur_nimg'] / 1000:.3f}", "role": "G_rendering"}
    return save_networks({"G_ema": G_ema}, dst, metadata=meta)


class _Dist:
    def __init__(self) -> None:
        self.world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.rank = dist.get_rank() if self.world > 1 else 0

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return t
        t = t.clone()
        dist.all_reduce(t)
        return t / self.world

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t)
        return t


def _grad_step(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], d: _Dist) -> None:
    """Average gradients over processes, zero non-finite values (as upstream), then step."""
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        flat = torch.cat([g.flatten() for g in grads])
        flat = d.mean(flat)
        torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
        for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            g.copy_(part.reshape(g.shape))
    opt.step()


def _adam(params: list[torch.nn.Parameter], lr: float, reg_interval: int) -> torch.optim.Adam:
    ratio = reg_interval / (reg_interval + 1)  # lazy regularisation: lr and betas scaled as upstream
    return torch.optim.Adam(params, lr=lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)


class Trainer:
    """One training run. ``Trainer(cfg).run()``; ``Trainer(cfg, resume=RUN)`` continues a run."""

    def __init__(
        self, cfg: TrainConfig, device: str | torch.device = "cpu", resume: str | None = None
    ) -> None:
        self.cfg = cfg
        self.dist = _Dist()
        self.device = torch.device(device)
        self.run_dir = Path(cfg.out)
        if cfg.batch % self.dist.world:
            raise ConfigError(
                f"batch {cfg.batch} is not divisible by the number of processes {self.dist.world}"
            )
        self.batch_local = cfg.batch // self.dist.world
        # A checkpoint to resume from is read and checked before anything is built.
        ckpt = read_checkpoint(latest_checkpoint(resume)) if resume is not None else None
        if self.device.type != "cuda" and cfg.precision != "fp32":
            log.warning("precision %s needs CUDA; training in float32 on %s", cfg.precision, self.device)
        self._build_networks()
        self._build_data()
        self._build_losses()
        self.cur_nimg = 0
        self.cur_tick = 0
        self.batch_idx = 0
        # The run owns torch's global RNG (ADA draws from it): a fresh run starts it from the seed, a
        # resumed run from the checkpoint's state, after everything above has been built.
        torch.manual_seed(cfg.seed * self.dist.world + self.dist.rank)
        if ckpt is not None:
            self.load_checkpoint(ckpt)

    # --- set-up -----------------------------------------------------------------------------------

    def _build_networks(self) -> None:
        cfg, dev = self.cfg, self.device
        G_real = load_generator(cfg.real, device="cpu")
        if cfg.precision == "fp16" and dev.type == "cuda":
            kw: dict[str, Any] = copy.deepcopy(G_real.init_kwargs)
            kw["synthesis_kwargs"].update(num_fp16_res=4, conv_clamp=256)
            G16 = Generator(**kw)
            G16.load_state_dict(G_real.state_dict())
            G_real = G16.eval().requires_grad_(False)
        try:
            D = load_discriminator(cfg.real, device="cpu")
        except CheckpointError as exc:
            if not cfg.allow_random_d:
                raise CheckpointError(
                    f"{exc}; fine-tuning needs the discriminator of {cfg.real} (an official training pickle "
                    "holds it). Pass --allow-random-d to start D from random weights instead."
                ) from None
            log.warning("starting the discriminator from random weights (--allow-random-d)")
            torch.manual_seed(cfg.seed)
            synthesis_kwargs = cast(dict[str, Any], G_real.init_kwargs["synthesis_kwargs"])
            D = Discriminator(
                c_dim=0,
                img_resolution=G_real.img_resolution,
                img_channels=G_real.img_channels,
                channel_base=synthesis_kwargs.get("channel_base", 32768),
                channel_max=synthesis_kwargs.get("channel_max", 512),
            )
        self.G_real = G_real.to(dev).eval().requires_grad_(False)
        self.G = copy.deepcopy(self.G_real).train().requires_grad_(False)
        self.G.mapping.eval()  # frozen: w_avg is not tracked either
        self.G_ema = copy.deepcopy(self.G_real).eval().requires_grad_(False)
        self.D = D.to(dev).train().requires_grad_(False)
        frozen = set(frozen_parameter_names(self.G, cfg.freeze_res))
        if cfg.freeze_res >= self.G.img_resolution:
            raise ConfigError(
                f"freeze_res {cfg.freeze_res} freezes every synthesis block of a {self.G.img_resolution} px "
                "generator; nothing would be trained",
                field="freeze_res",
            )
        self.G_params = [p for n, p in self.G.named_parameters() if n not in frozen]
        self.D_params = [p for p in self.D.parameters()]
        self.opt_G = _adam(self.G_params, cfg.g_lr if cfg.g_lr is not None else cfg.lr, cfg.G_reg_interval)
        self.opt_D = _adam(self.D_params, cfg.d_lr if cfg.d_lr is not None else cfg.lr, cfg.D_reg_interval)
        log.info(
            "G_rendering: %d trainable tensors, %d frozen (mapping and ToRGB%s)",
            len(self.G_params),
            len(frozen),
            f", synthesis blocks up to {cfg.freeze_res} px" if cfg.freeze_res else "",
        )

    def _build_data(self) -> None:
        from realface.train.dataset import ImageDataset, make_loader

        cfg = self.cfg
        self.dataset = ImageDataset(cfg.data, resolution=self.G.img_resolution, xflip=cfg.xflip)
        self.loader = make_loader(
            self.dataset,
            self.batch_local,
            num_workers=cfg.workers,
            seed=cfg.seed,
            rank=self.dist.rank,
            world_size=self.dist.world,
        )
        self._loader_iter: Iterator | None = None

    def _build_losses(self) -> None:
        cfg = self.cfg
        self.augment = None
        self.ada = None
        if cfg.ada or cfg.augment_p > 0:
            from realface.train.augment import AdaConfig, AdaptiveP, AugmentPipe

            self.augment = AugmentPipe(p=cfg.augment_p).to(self.device)
            if cfg.ada:
                ada_cfg = AdaConfig(target=cfg.ada_target, interval=cfg.ada_interval, kimg=cfg.ada_kimg)
                self.ada = AdaptiveP(self.augment, cfg.batch, ada_cfg)
        sketch = build_sketch_for(cfg.identity)
        if sketch is not None:
            sketch = sketch.to(self.device)
        lpips = None
        if cfg.identity.color_weight:
            from realface.nn.lpips import load_lpips_vgg

            lpips = load_lpips_vgg(device=self.device, vgg_path=cfg.lpips_vgg)
        weights = LossWeights(
            r1_gamma=cfg.gamma, pl_weight=cfg.pl_weight, style_mixing=cfg.style_mixing, identity=cfg.identity
        )
        self.loss = StyleGAN2Loss(
            self.G,
            self.D,
            self.G_real,
            weights,
            augment=self.augment,
            sketch=sketch,
            lpips=lpips,
            reduce_mean=self.dist.mean,
            rank=self.dist.rank,
            world=self.dist.world,
        )

    # --- one iteration ----------------------------------------------------------------------------

    def _next_reals(self) -> torch.Tensor:
        from realface.train.dataset import to_model_range

        if self._loader_iter is None:
            self._loader_iter = iter(self.loader)
        x = next(self._loader_iter)
        if isinstance(x, (list, tuple)):
            x = x[0]
        return to_model_range(x.to(self.device, non_blocking=True))  # [n, 3, R, R] in [-1, 1]

    def _generator(self) -> torch.Generator:
        """The iteration's random source: identical on every process, derived from (seed, iteration)."""
        return torch.Generator(device=self.device).manual_seed(self.cfg.seed * 1_000_003 + self.batch_idx)

    def _autocast(self):
        if self.device.type == "cuda" and self.cfg.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        import contextlib

        return contextlib.nullcontext()

    def step(self) -> dict[str, float]:
        cfg, d = self.cfg, self.dist
        gen = self._generator()
        real = self._next_reals()
        stats: dict[str, float] = {}
        with self._autocast():
            # G main phase (+ identity losses on the same W+ batch).
            for p in self.G_params:
                p.requires_grad_(True)
            self.opt_G.zero_grad(set_to_none=True)
            stats.update(
                self.loss.G_main(draw(gen, self.G, cfg.batch, d.rank, d.world, cfg.style_mixing, self.device))
            )
            _grad_step(self.opt_G, self.G_params, d)
            if cfg.pl_weight and self.batch_idx % cfg.G_reg_interval == 0:
                self.opt_G.zero_grad(set_to_none=True)
                dr = draw(gen, self.G, cfg.batch, d.rank, d.world, cfg.style_mixing, self.device)
                stats.update(self.loss.G_pl(dr, gen, cfg.batch, gain=cfg.G_reg_interval))
                _grad_step(self.opt_G, self.G_params, d)
            for p in self.G_params:
                p.requires_grad_(False)
            # D main phase (+ lazy R1).
            for p in self.D_params:
                p.requires_grad_(True)
            self.opt_D.zero_grad(set_to_none=True)
            dd = draw(gen, self.G, cfg.batch, d.rank, d.world, cfg.style_mixing, self.device)
            s, real_logits = self.loss.D_main(dd, real)
            stats.update(s)
            _grad_step(self.opt_D, self.D_params, d)
            if cfg.gamma and self.batch_idx % cfg.D_reg_interval == 0:
                self.opt_D.zero_grad(set_to_none=True)
                stats.update(self.loss.D_r1(real, gain=cfg.D_reg_interval))
                _grad_step(self.opt_D, self.D_params, d)
            for p in self.D_params:
                p.requires_grad_(False)
        self._update_ema()
        if self.ada is not None:
            self.ada.accumulate(real_logits)
        self.cur_nimg += cfg.batch
        self.batch_idx += 1
        if self.ada is not None:
            self.ada.step(self.batch_idx, all_reduce=self.dist.sum_ if self.dist.world > 1 else None)
        return stats

    def _update_ema(self) -> None:
        ema_nimg = self.cfg.ema_kimg * 1000
        beta = 0.5 ** (self.cfg.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
                p_ema.copy_(p.detach().lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
                b_ema.copy_(b)

    # --- checkpoints ------------------------------------------------------------------------------

    def state_tensors(self) -> dict[str, torch.Tensor]:
        t: dict[str, torch.Tensor] = {"pl_mean": self.loss.pl_mean.detach().cpu().reshape(1)}
        if self.ada is not None:
            t["ada_stats"] = self.ada.state_dict()["stats"].cpu()
        if self.augment is not None:
            t["augment_p"] = self.augment.p.detach().cpu().reshape(1)
        t["rng_cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            t["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        for name, opt in (("opt_G", self.opt_G), ("opt_D", self.opt_D)):
            for idx, st in opt.state_dict()["state"].items():
                for k, v in st.items():
                    t[f"{name}.{idx}.{k}"] = v.detach().cpu()
        return {k: v.contiguous() for k, v in t.items()}

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/ckpt-<nimg>/`` atomically (temp folder + rename); keep the last ``keep``."""
        if self.dist.rank != 0:
            return None
        root = self.run_dir / "checkpoints"
        final = root / f"ckpt-{self.cur_nimg:09d}"
        with atomic_dir(final) as tmp:
            self._write_checkpoint(tmp)
        for old in sorted(p for p in root.glob("ckpt-*") if CKPT_RE.match(p.name))[: -self.cfg.keep]:
            shutil.rmtree(old, ignore_errors=True)
        log.info("checkpoint %s", final)
        return final

    def _write_checkpoint(self, folder: Path) -> None:
        """The checkpoint's three files, each complete and synced, into the (temporary) ``folder``."""
        from safetensors.torch import save_file

        save_networks({"G": self.G, "G_ema": self.G_ema, "D": self.D}, folder / "networks.safetensors")
        tensors = self.state_tensors()
        loader_tensors: dict[str, torch.Tensor] = {}
        state = {
            "cur_nimg": self.cur_nimg,
            "cur_tick": self.cur_tick,
            "batch_idx": self.batch_idx,
            "config": self.cfg.to_dict(),
            "opt_G": [
                {k: v for k, v in g.items() if k != "params"} for g in self.opt_G.state_dict()["param_groups"]
            ],
            "opt_D": [
                {k: v for k, v in g.items() if k != "params"} for g in self.opt_D.state_dict()["param_groups"]
            ],
            "loader": _split_tensors(self.loader.state_dict(), "loader", loader_tensors),
        }
        tensors.update(loader_tensors)
        with atomic_path(folder / "state.safetensors") as tmp:
            save_file(tensors, str(tmp))
        atomic_write_text(folder / "state.json", json.dumps(state, indent=2, sort_keys=True))

    def load_checkpoint(self, ckpt: Path | Checkpoint) -> None:
        if not isinstance(ckpt, Checkpoint):
            ckpt = read_checkpoint(ckpt)
        check_matches(ckpt, {"G": self.G, "G_ema": self.G_ema, "D": self.D})
        recs, state, tensors, ckpt = ckpt.records, ckpt.state, ckpt.tensors, ckpt.path
        for name, net in (("G", self.G), ("G_ema", self.G_ema), ("D", self.D)):
            net.load_state_dict(recs[name].state_dict)
        self.cur_nimg, self.cur_tick, self.batch_idx = (
            state["cur_nimg"],
            state["cur_tick"],
            state["batch_idx"],
        )
        self.loss.pl_mean.copy_(tensors["pl_mean"].reshape([]).to(self.device))
        if self.ada is not None and "ada_stats" in tensors:
            self.ada.load_state_dict({"stats": tensors["ada_stats"]})
        if self.augment is not None and "augment_p" in tensors:
            self.augment.p.copy_(tensors["augment_p"].reshape([]).to(self.device))
        torch.set_rng_state(tensors["rng_cpu"])
        if self.device.type == "cuda" and "rng_cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng_cuda"], self.device)
        for name, opt in (("opt_G", self.opt_G), ("opt_D", self.opt_D)):
            sd = opt.state_dict()
            per: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
            for k, v in tensors.items():
                if k.startswith(name + "."):
                    _, idx, key = k.split(".", 2)
                    per[int(idx)][key] = v if key == "step" else v.to(self.device)
            sd["state"] = dict(per)
            if len(sd["param_groups"]) != len(state[name]):
                raise CheckpointError(
                    f"{ckpt / 'state.json'}: {name} has {len(state[name])} parameter group(s), "
                    f"this run's optimiser {len(sd['param_groups'])}"
                )
            for g, saved in zip(sd["param_groups"], state[name], strict=True):
                g.update({k: (tuple(v) if k == "betas" else v) for k, v in saved.items()})
            _check_moments(ckpt / "state.safetensors", name, opt, per)
            opt.load_state_dict(sd)
        if state.get("loader") is not None:
            try:
                self.loader.load_state_dict(_join_tensors(state["loader"], tensors))
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckpointError(f"{ckpt / 'state.json'}: unusable loader state ({exc})") from None
            self._loader_iter = None
        log.info("resumed from %s at %.3f kimg", ckpt, self.cur_nimg / 1000)

    # --- monitoring -------------------------------------------------------------------------------

    def snapshot_grid(self) -> np.ndarray:
        """Fixed latents: G_real's images (top row) above G_rendering's (G_ema, bottom row)."""
        from realface.sampling import make_grid, to_uint8

        z = torch.from_numpy(np.random.RandomState(self.cfg.seed).randn(self.cfg.grid_size, self.G.z_dim))
        z = z.to(self.device, torch.float32)
        with torch.no_grad():
            ws = self.G_real.mapping(z, None)
            real = to_uint8(self.G_real.synthesis(ws, noise_mode="const"))
            rend = to_uint8(self.G_ema.synthesis(ws, noise_mode="const"))
        return make_grid(list(real) + list(rend), cols=self.cfg.grid_size)

    def _write_grid(self) -> None:
        with atomic_path(self.run_dir / f"fakes{self.cur_nimg // 1000:06d}.png") as tmp:
            Image.fromarray(self.snapshot_grid()).save(tmp, format="PNG")

    # --- the run ----------------------------------------------------------------------------------

    def run(self, progress: bool = True) -> Path:
        cfg = self.cfg
        rank0 = self.dist.rank == 0
        if rank0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for stale in (self.run_dir / "checkpoints").glob(".*.tmp"):
                if is_temporary(stale.name) or stale.name.startswith(".ckpt-"):  # left by a killed save
                    shutil.rmtree(stale, ignore_errors=True)
            atomic_write_text(
                self.run_dir / "training_options.json",
                json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n",
            )
            if self.cur_nimg == 0:
                self._write_grid()
        writer = _tensorboard(self.run_dir) if rank0 else None
        bar = None
        if progress and rank0:
            from tqdm import tqdm

            bar = tqdm(total=round(cfg.kimg * 1000), initial=self.cur_nimg, unit="img", dynamic_ncols=True)
        total_nimg = round(cfg.kimg * 1000)
        tick_nimg = self.cur_nimg
        tick_start = time.time()
        collected: dict[str, list[float]] = defaultdict(list)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        while self.cur_nimg < total_nimg:
            for k, v in self.step().items():
                collected[k].append(v)
            if bar is not None:
                bar.update(cfg.batch)
            done = self.cur_nimg >= total_nimg
            if self.cur_nimg >= tick_nimg + cfg.kimg_per_tick * 1000 or done:
                self.cur_tick += 1
                secs = time.time() - tick_start
                line = {k: float(np.mean(v)) for k, v in collected.items()}
                line.update(
                    {
                        "Progress/tick": self.cur_tick,
                        "Progress/kimg": self.cur_nimg / 1000,
                        "Progress/augment": float(self.augment.p) if self.augment is not None else 0.0,
                        "Timing/sec_per_tick": secs,
                        "Timing/img_per_sec": (self.cur_nimg - tick_nimg) / max(secs, 1e-9),
                        "Resources/peak_gpu_mem_gb": (
                            torch.cuda.max_memory_allocated(self.device) / 2**30
                            if self.device.type == "cuda"
                            else 0.0
                        ),
                        "Resources/cpu_mem_gb": _rss_gb(),
                        "timestamp": time.time(),
                    }
                )
                if rank0:
                    with open(self.run_dir / "stats.jsonl", "a") as f:
                        f.write(json.dumps(line) + "\n")
                    if writer is not None:
                        for k, v in line.items():
                            writer.add_scalar(k, v, global_step=self.cur_nimg)
                    if bar is not None:
                        bar.set_postfix(
                            G=f"{line.get('Loss/G/total', 0):.3f}",
                            D=f"{line.get('Loss/D/loss', 0):.3f}",
                            p=f"{line['Progress/augment']:.3f}",
                        )
                collected.clear()
                tick_nimg, tick_start = self.cur_nimg, time.time()
                if self.cur_tick % cfg.snap == 0 or done:
                    self.save_checkpoint()
                    if rank0:
                        self._write_grid()
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        return self.run_dir


def _check_moments(
    path: Path, name: str, opt: torch.optim.Optimizer, per: dict[int, dict[str, torch.Tensor]]
) -> None:
    """Saved Adam moments belong to this optimiser's parameters (index and shape)."""
    params = [p for g in opt.param_groups for p in g["params"]]
    for idx, st in per.items():
        if idx >= len(params):
            raise CheckpointError(
                f"{path}: {name} has state for parameter {idx}; the optimiser has {len(params)}"
            )
        for key, v in st.items():
            if key != "step" and tuple(v.shape) != tuple(params[idx].shape):
                raise CheckpointError(
                    f"{path}: {name}.{idx}.{key} has shape {tuple(v.shape)}, the parameter {tuple(params[idx].shape)}"
                )


def _split_tensors(obj: Any, path: str, out: dict[str, torch.Tensor]) -> Any:
    """JSON-able copy of a nested state with every tensor moved into ``out`` (replaced by a reference)."""
    if isinstance(obj, torch.Tensor):
        out[path] = obj.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        return {str(k): _split_tensors(v, f"{path}/{k}", out) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(v, f"{path}/{i}", out) for i, v in enumerate(obj)]
    return obj


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: _join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def _rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _tensorboard(run_dir: Path) -> Any:
    """A TensorBoard ``SummaryWriter`` on ``run_dir``, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: stats.jsonl only
        return None
    return SummaryWriter(str(run_dir))
