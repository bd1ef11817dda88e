"""A controlled benchmark of the whole method, where ground truth exists.

A real-world test of realism transfer has no ground truth: nobody has the photo of the rendered
person. Here the "rendering" is made synthetic so that the truth is known:

1. ``G_real``: a small StyleGAN2-ADA generator (64 px, the official architecture with 64 channels,
   seeded random weights with random biases and noise strengths; it is a fixed image distribution, not
   a face model), with a discriminator of the same size.
2. ``T``: a fixed, non-learned rendering style (:func:`rendering_style`): posterisation, an
   edge-preserving (bilateral) smoothing and a colour shift — flat shading and tinted colours, like a
   cheap CG render.
3. A training set of ``T(G_real(w))`` images, and ``G_rendering`` fine-tuned from ``G_real`` on it with
   the real training code (:class:`realface.train.loop.Trainer`).
4. For held-out latents ``w*``: invert ``T(G_real(w*))`` into ``G_rendering``, decode the latent with
   ``G_real`` and compare with the truth ``G_real(w*)`` (LPIPS and L2).

Rows: the full method; the same fine-tuning without the identity losses (λs = λc = 0); and the
baseline, inverting ``T(G_real(w*))`` directly into ``G_real`` under the sketch and colour losses
(:class:`realface.pipeline.RealFace` baseline mode). Whatever the numbers show is reported.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["TransferBenchConfig", "rendering_style", "run_transfer_bench"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferBenchConfig:
    """Sizes of the benchmark. ``quick()`` is small enough for one CI test.

    train_images: size of the T(G_real(w)) training set. kimg / batch: fine-tuning length. steps:
    inversion steps per held-out face. held_out: number of held-out latents. truncation: psi of all
    sampled latents (0.7 keeps samples in the well-modelled part of W).
    """

    train_images: int = 256
    kimg: float = 2.0
    batch: int = 8
    steps: int = 200
    held_out: int = 8
    truncation: float = 0.7
    seed: int = 0

    @classmethod
    def quick(cls) -> TransferBenchConfig:
        return cls(train_images=16, kimg=0.016, batch=4, steps=10, held_out=2)


def _bilateral(
    x: torch.Tensor, radius: int = 2, sigma_space: float = 2.0, sigma_range: float = 0.15
) -> torch.Tensor:
    """Edge-preserving smoothing of [N, C, H, W] in [0, 1]: a (2r+1)² bilateral filter on RGB distance."""
    N, C, H, W = x.shape
    k = 2 * radius + 1
    patches = F.unfold(F.pad(x, [radius] * 4, mode="reflect"), k).reshape(N, C, k * k, H, W)  # [N,C,k²,H,W]
    centre = x.unsqueeze(2)  # [N, C, 1, H, W]
    dy, dx = torch.meshgrid(
        torch.arange(-radius, radius + 1), torch.arange(-radius, radius + 1), indexing="ij"
    )
    spatial = torch.exp(-(dx.square() + dy.square()).float() / (2 * sigma_space**2)).reshape(
        1, 1, k * k, 1, 1
    )
    rng = torch.exp(-(patches - centre).square().sum(1, keepdim=True) / (2 * sigma_range**2))  # [N,1,k²,H,W]
    w = spatial.to(x) * rng
    return (patches * w).sum(2) / w.sum(2)


def rendering_style(img: torch.Tensor) -> torch.Tensor:
    """The fixed rendering style T: [N, 3, H, W] in [-1, 1] -> same shape and range.

    Bilateral smoothing (flat shading), posterisation to 6 levels per channel, then a warm colour
    shift (R × 1.08 + 0.04, G × 0.97, B × 0.85 + 0.02 in [0, 1]).
    """
    x = ((img.clamp(-1, 1) + 1) / 2).float()  # [N, 3, H, W] in [0, 1]
    x = _bilateral(x)
    x = torch.round(x * 5) / 5
    gain = torch.tensor([1.08, 0.97, 0.85], device=x.device).reshape(1, 3, 1, 1)
    bias = torch.tensor([0.04, 0.0, 0.02], device=x.device).reshape(1, 3, 1, 1)
    x = (x * gain + bias).clamp(0, 1)
    return x * 2 - 1


def _make_g_real(seed: int):
    from realface.nn.stylegan2 import Discriminator, Generator

    torch.manual_seed(seed)
    syn = dict(channel_base=1024, channel_max=64, num_fp16_res=0, conv_clamp=256)
    G = Generator(
        z_dim=64,
        c_dim=0,
        w_dim=64,
        img_resolution=64,
        img_channels=3,
        mapping_kwargs={"num_layers": 8},
        synthesis_kwargs=syn,
    )
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.1)
        ws = G.mapping(torch.randn(4096, 64), None)
        G.mapping.w_avg.copy_(ws[:, 0].mean(0))
    D = Discriminator(
        c_dim=0,
        img_resolution=64,
        img_channels=3,
        channel_base=1024,
        channel_max=64,
        conv_clamp=256,
        epilogue_kwargs={"mbstd_group_size": 4},
    )
    return G.eval(), D.eval()


def _sample(G, n: int, psi: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.from_numpy(np.random.RandomState(seed).randn(n, G.z_dim)).float()
    with torch.no_grad():
        ws = G.mapping(z, None, truncation_psi=psi)
        return ws, G.synthesis(ws, noise_mode="const")


def run_transfer_bench(
    out: str | Path,
    cfg: TransferBenchConfig = TransferBenchConfig(),
    lpips_vgg: str | None = None,
    progress: bool = True,
) -> list[dict]:
    """Run the benchmark; writes ``out/results.json`` and ``out/results.md`` and returns the rows."""
    from realface.checkpoints import save_networks
    from realface.invert import InvertConfig, LpipsLoss, invert
    from realface.nn.lpips import load_lpips_vgg
    from realface.pipeline import ApplyConfig, RealFace
    from realface.train.loop import TrainConfig, Trainer
    from realface.utils.fs import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    G_real, D = _make_g_real(cfg.seed)
    fixture = save_networks({"G_ema": G_real, "D": D}, out / "g_real.safetensors")
    lpips = load_lpips_vgg(vgg_path=lpips_vgg)
    t0 = time.time()

    # 1. Training set T(G_real(w)).
    data = out / "train_set"
    data.mkdir(exist_ok=True)
    _, imgs = _sample(G_real, cfg.train_images, cfg.truncation, cfg.seed + 1)
    styled = rendering_style(imgs)
    for i, im in enumerate(((styled + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()):
        Image.fromarray(im).save(data / f"{i:05d}.png")

    # 2. Fine-tune with and without the identity losses.
    generators = {}
    for name, weights in (("full", {}), ("no_identity", {"sketch_weight": 0.0, "color_weight": 0.0})):
        tcfg = TrainConfig(
            data=str(data),
            real=str(fixture),
            out=str(out / f"run_{name}"),
            kimg=cfg.kimg,
            batch=cfg.batch,
            kimg_per_tick=max(cfg.kimg / 4, 0.004),
            snap=1000,
            workers=0,
            lpips_vgg=lpips_vgg,
            seed=cfg.seed,
            grid_size=4,
            **weights,
        )
        trainer = Trainer(tcfg)
        trainer.run(progress=progress)
        generators[name] = trainer.G_ema.eval()

    # 3. Held-out latents, their truth and their rendering.
    _, truth = _sample(G_real, cfg.held_out, cfg.truncation, cfg.seed + 2)
    rendered = rendering_style(truth)
    icfg = InvertConfig(steps=cfg.steps, seed=cfg.seed)

    def score(decoded: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            lp = float(lpips(decoded.clamp(-1, 1), truth).mean())
            l2 = float((((decoded.clamp(-1, 1) + 1) / 2 - (truth + 1) / 2).square()).mean())
        return lp, l2

    rows = []
    for name, label in (
        ("full", "full method (fine-tuned with identity losses)"),
        ("no_identity", "fine-tuned without identity losses"),
    ):
        res = invert(generators[name], rendered, LpipsLoss(lpips, 256), icfg)
        with torch.no_grad():
            decoded = G_real.synthesis(res.ws, noise_mode="const")
        lp, l2 = score(decoded)
        rows.append({"row": label, "lpips": lp, "l2": l2})
    baseline = RealFace(G_real, None, lpips, ApplyConfig(invert=icfg))
    res = invert(G_real, rendered, baseline.inversion_loss(), icfg)
    with torch.no_grad():
        decoded = G_real.synthesis(res.ws, noise_mode="const")
    lp, l2 = score(decoded)
    rows.append(
        {"row": "baseline (inverted directly into G_real, sketch + colour losses)", "lpips": lp, "l2": l2}
    )
    lp, l2 = score(rendered)
    rows.append({"row": "reference: the rendering itself vs the truth", "lpips": lp, "l2": l2})

    meta = {
        "config": dataclasses.asdict(cfg),
        "seconds": time.time() - t0,
        "lpips_vgg": lpips_vgg or "tv-vgg16 (weights cache)",
    }
    atomic_write_text(out / "results.json", json.dumps({"rows": rows, **meta}, indent=2) + "\n")
    lines = ["| row | LPIPS ↓ | L2 ↓ |", "|---|---|---|"]
    lines += [f"| {r['row']} | {r['lpips']:.4f} | {r['l2']:.4f} |" for r in rows]
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    return rows
