"""The fine-tuning objective: StyleGAN2-ADA's losses plus the paper's identity losses.

    L_G = L_origin + λs · L_sketch + λc · L_color        (Wang et al., CAVW 2024, Sec. 3.2)

``L_origin`` is the StyleGAN2-ADA objective (reference/stylegan2-ada.md §A4): non-saturating logistic
G loss ``softplus(-D(G(z)))``, D loss ``softplus(D(G(z))) + softplus(-D(x))``, lazy R1 on reals
(``gamma/2 · |∇_x D(aug(x))|²``, gradient w.r.t. the un-augmented image) and lazy path-length
regularisation on half the batch. The identity losses compare ``G_real(w+)`` and ``G_rendering(w+)``
on the **same W+ batch and the same noise** as the G main phase (:mod:`realface.losses`).

Every random draw of a phase comes from a :class:`torch.Generator` passed in by the loop, drawn for
the *global* batch and sliced to this process's samples, so that one process and several processes
with the same global batch see the same latents, and a resumed run sees the same draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from realface.losses import IdentityLossConfig, identity_loss
from realface.nn.lpips import LPIPS
from realface.nn.stylegan2 import Discriminator, Generator

__all__ = ["LossWeights", "Draws", "draw", "run_G", "StyleGAN2Loss"]


@dataclass(frozen=True)
class LossWeights:
    """r1_gamma: R1 weight γ (loss γ/2 · |∇D|²). pl_weight: path-length weight (0 disables).
    style_mixing: probability of style mixing. identity: λs, λc and the settings of the identity
    losses (:class:`realface.losses.IdentityLossConfig`; the paper's by default)."""

    r1_gamma: float = 10.0
    pl_weight: float = 2.0
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing: float = 0.9
    identity: IdentityLossConfig = field(default_factory=IdentityLossConfig)


@dataclass
class Draws:
    """Random inputs of one G evaluation, for this process's slice of the global batch."""

    z: torch.Tensor  # [n, z_dim]
    z_mix: torch.Tensor  # [n, z_dim]
    mix_cutoff: int | None  # W+ index from which z_mix is used (None: no mixing)
    noise: list[torch.Tensor]  # per noise layer [n, 1, R, R]


def draw(
    gen: torch.Generator,
    G: Generator,
    global_batch: int,
    rank: int,
    world: int,
    style_mixing: float,
    device: torch.device,
) -> Draws:
    """Draw the global batch's latents/noise from ``gen`` (a generator on ``device``) and keep the
    samples ``rank::world`` of this process."""
    kw: dict[str, Any] = dict(generator=gen, device=device)
    z = torch.randn([global_batch, G.z_dim], **kw)
    z_mix = torch.randn([global_batch, G.z_dim], **kw)
    u = float(torch.rand([], **kw))
    cut = int(torch.randint(1, G.num_ws, [], **kw)) if G.num_ws > 1 else None
    mix_cutoff = cut if (u < style_mixing and cut is not None) else None
    noise = [
        torch.randn([global_batch, 1, lay.resolution, lay.resolution], **kw)
        for lay in G.synthesis.noise_layers()
    ]
    sl = slice(rank, None, world)
    return Draws(z=z[sl], z_mix=z_mix[sl], mix_cutoff=mix_cutoff, noise=[n[sl] for n in noise])


def run_G(G: Generator, d: Draws) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [n, 3, R, R], ws [n, num_ws, w_dim]) with style mixing as the official loss does it:
    one cutoff for the whole batch; the second latent is mapped without updating ``w_avg``."""
    ws = G.mapping(d.z, None)
    if d.mix_cutoff is not None:
        ws = ws.clone()
        ws[:, d.mix_cutoff :] = G.mapping(d.z_mix, None, skip_w_avg_update=True)[:, d.mix_cutoff :]
    return G.synthesis(ws, noise=d.noise), ws


class StyleGAN2Loss:
    """Phases of one training iteration; each returns a dict of detached scalars for the stats.

    ``augment``: the ADA pipe applied to every image D sees (or None). ``G_real``: the frozen
    photo-real generator for the identity losses. ``sketch``/``lpips``: the extractor and LPIPS.
    ``reduce_mean``: averages a tensor over processes (identity for one process).
    """

    def __init__(
        self,
        G: Generator,
        D: Discriminator,
        G_real: Generator,
        weights: LossWeights,
        augment: torch.nn.Module | None = None,
        sketch: torch.nn.Module | None = None,
        lpips: LPIPS | None = None,
        reduce_mean: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.G, self.D, self.G_real, self.w = G, D, G_real, weights
        self.rank, self.world = rank, world
        self.augment, self.sketch, self.lpips = augment, sketch, lpips
        self.reduce_mean = reduce_mean
        self.pl_mean = torch.zeros([], device=next(G.parameters()).device)
        if weights.identity.sketch_weight and sketch is None:
            raise ValueError("a sketch weight was given but no sketch extractor")
        if weights.identity.color_weight and lpips is None:
            raise ValueError("a colour weight was given but no LPIPS network")

    def run_D(self, img: torch.Tensor) -> torch.Tensor:
        if self.augment is not None:
            img = self.augment(img)
        return self.D(img, None)

    def identity_terms(self, fake: torch.Tensor, ws: torch.Tensor, d: Draws) -> dict[str, torch.Tensor]:
        """The identity losses between G_real(ws) and G_rendering(ws) = ``fake`` (same noise), per
        sample: ``"sketch"`` and ``"color"`` (unweighted, for the stats; only the enabled ones) and
        ``"total"`` (λs·L_sketch + λc·L_color, :func:`realface.losses.identity_loss`). Empty when
        both weights are 0."""
        cfg = self.w.identity
        if not cfg.enabled:
            return {}
        with torch.no_grad():
            real_style = self.G_real.synthesis(ws.detach(), noise=d.noise)  # [n, 3, R, R]
        terms = identity_loss(real_style, fake, cfg, extractor=self.sketch, lpips=self.lpips)
        out = {"total": terms.total}
        if cfg.sketch_weight:
            out["sketch"] = terms.sketch
        if cfg.color_weight:
            out["color"] = terms.color
        return out

    def G_main(self, d: Draws, gain: float = 1.0) -> dict[str, float]:
        fake, ws = run_G(self.G, d)
        logits = self.run_D(fake)
        loss_adv = F.softplus(-logits).mean()
        terms = self.identity_terms(fake, ws, d)
        total = loss_adv
        if "total" in terms:
            total = total + terms.pop("total").mean()
        (total * gain).backward()
        stats = {"Loss/G/loss": float(loss_adv.detach()), "Loss/scores/fake": float(logits.detach().mean())}
        for k, v in terms.items():
            stats[f"Loss/G/{k}"] = float(v.detach().mean())
        stats["Loss/G/total"] = float(total.detach())
        return stats

    def G_pl(self, d: Draws, gen: torch.Generator, global_batch: int, gain: float) -> dict[str, float]:
        """Path-length regularisation on the first ``1/pl_batch_shrink`` of the global batch (this
        process's samples of it are the first half of its own slice)."""
        n = max(1, d.z.shape[0] // self.w.pl_batch_shrink)
        n_global = max(self.world, global_batch // self.w.pl_batch_shrink)
        sub = Draws(d.z[:n], d.z_mix[:n], d.mix_cutoff, [x[:n] for x in d.noise])
        ws = self.G.mapping(sub.z, None)
        if sub.mix_cutoff is not None:
            ws = ws.clone()
            ws[:, sub.mix_cutoff :] = self.G.mapping(sub.z_mix, None, skip_w_avg_update=True)[
                :, sub.mix_cutoff :
            ]
        ws = ws.detach().requires_grad_(True)  # the mapping network is frozen: differentiate w.r.t. ws
        img = self.G.synthesis(ws, noise=sub.noise)
        H, W = img.shape[2:]
        pl_noise = torch.randn([n_global, *img.shape[1:]], generator=gen, device=img.device)  # global draw
        pl_noise = pl_noise[self.rank :: self.world][:n].to(img.dtype) / math.sqrt(H * W)
        (g,) = torch.autograd.grad((img * pl_noise).sum(), ws, create_graph=True)  # [n, num_ws, w_dim]
        lengths = g.square().sum(2).mean(1).sqrt()  # [n]
        pl_mean = self.pl_mean.lerp(self.reduce_mean(lengths.mean().detach()), self.w.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        penalty = (lengths - pl_mean).square()
        (penalty.mean() * self.w.pl_weight * gain + img[:, 0, 0, 0].sum() * 0).backward()
        return {"Loss/pl_penalty": float(penalty.detach().mean()), "Loss/pl_mean": float(pl_mean)}

    def D_main(
        self, d: Draws, real: torch.Tensor, gain: float = 1.0
    ) -> tuple[dict[str, float], torch.Tensor]:
        with torch.no_grad():
            fake, _ = run_G(self.G, d)
        logits_fake = self.run_D(fake)
        logits_real = self.run_D(real)
        loss = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        (loss * gain).backward()
        stats = {"Loss/D/loss": float(loss.detach()), "Loss/scores/real": float(logits_real.detach().mean())}
        return stats, logits_real.detach()

    def D_r1(self, real: torch.Tensor, gain: float) -> dict[str, float]:
        x = real.detach().requires_grad_(True)
        logits = self.run_D(x)
        (g,) = torch.autograd.grad(logits.sum(), x, create_graph=True)  # [n, 3, R, R]
        penalty = g.square().sum(dim=[1, 2, 3])  # [n]
        (penalty.mean() * (self.w.r1_gamma / 2) * gain + logits.sum() * 0).backward()
        return {"Loss/r1_penalty": float(penalty.detach().mean())}
