"""The controlled benchmark of the whole method, in the trained toy world where the truth is known.

A real test of realism transfer has no ground truth: nobody has the photo of a rendered person. In the
toy world (:mod:`realface.bench.world`, :mod:`realface.bench.faces`) every CG render has one:

1. ``G_real``: the world's trained 32 px StyleGAN2-ADA generator of procedural "photo" faces, with
   its discriminator ``D``.
2. A training set of rendered faces: ``render_cg(p)`` for random parameters ``p`` (style ``"cg"``, a
   different drawing of the same geometry), or a fixed pixel filter of the photos (style
   ``"filter"``, :func:`rendering_style`, the easier case). Unpaired, as the paper's DRFHQ is.
3. ``G_rendering`` fine-tuned from ``G_real`` on that set with the real training code
   (:class:`realface.train.loop.Trainer`), with and without the identity losses.
4. For held-out parameters ``p*``: the input is the rendering of ``p*``, the truth is
   ``render_photo(p*)``; every row produces a photo-style face from the input, compared with the
   truth by LPIPS, L2 and the error of the identity parameters read back by the world's regressor.

Rows (each a method that sees only the input render):

- ``full``: invert into G_rendering (identity losses on), decode the latent with G_real (the paper).
- ``no_identity``: the same with G_rendering fine-tuned without the identity losses.
- ``baseline``: invert directly into G_real under the sketch and colour losses (baseline mode).
- ``direct``: invert directly into G_real under LPIPS alone (the plain projector).
- ``oracle``: invert into the world's exact CG generator ``G_oracle`` (G_real regressed onto
  ``render_cg``, mapping and ToRGB frozen), decode with G_real: what a perfect fine-tuning would give.
- ``rendering``: the input itself, compared with the truth (doing nothing).
- ``g_real_floor``: the truth itself inverted into G_real and decoded: how close G_real can get at all.

Each row reports per-sample values, their mean and a 95 % confidence interval (Student t); paired
differences between rows (same held-out faces) with their 95 % intervals decide which is better.

A second table applies the paper's identity-consistency protocol to each rendering generator (``full``,
``no_identity`` and the world's ``oracle``): :func:`realface.bench.consistency.toy_consistency` on
``consistency_num`` shared latents, the regressor's parameter error between ``G_rendering(w)`` and
``G_real(w)`` (0: the same person), against the truth, and L2 / LPIPS against the CG rendering.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from realface.bench.faces import render_cg, render_photo, sample_params
from realface.errors import ConfigError
from realface.losses import IdentityLossConfig
from realface.metrics.consistency import mean_ci

if TYPE_CHECKING:
    from realface.invert import TargetLoss
    from realface.nn.stylegan2 import Generator

__all__ = [
    "TransferBenchConfig",
    "rendering_style",
    "render_style",
    "run_transfer_bench",
    "mean_ci",
    "transfer_faces",
    "invert_faces",
    "decode_faces",
    "score_faces",
    "paired_difference",
    "METRICS",
    "ROWS",
    "CONSISTENCY_ROWS",
]

log = logging.getLogger(__name__)

#: Row id -> label, in the order of the report.
ROWS: dict[str, str] = {
    "full": "full method (G_rendering with identity losses -> G_real)",
    "no_identity": "G_rendering without identity losses -> G_real",
    "baseline": "baseline: direct into G_real, sketch + colour losses",
    "direct": "direct inversion into G_real, LPIPS only",
    "oracle": "oracle: the exact CG generator of the world -> G_real",
    "rendering": "the rendering itself (doing nothing)",
    "g_real_floor": "floor: the truth inverted into G_real",
}
#: Rendering generators whose identity consistency with G_real is reported, id -> label.
CONSISTENCY_ROWS: dict[str, str] = {
    "full": "G_rendering with identity losses",
    "no_identity": "G_rendering without identity losses",
    "oracle": "oracle: the exact CG generator of the world",
}
#: Pairs (a, b) whose paired difference a - b is reported.
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("full", "direct"),
    ("full", "rendering"),
    ("full", "baseline"),
    ("full", "no_identity"),
    ("oracle", "full"),
    ("baseline", "direct"),
)


@dataclass(frozen=True)
class TransferBenchConfig:
    """Sizes and settings of the benchmark (saved in ``results.json``).

    world: folder of a toy world (None: the one shipped with realface). style: ``"cg"`` or
    ``"filter"``. train_images: rendered faces to fine-tune on. kimg / batch / lr / gamma: fine-tuning
    length, batch, learning rate and R1 weight. identity: the identity losses of the full method
    (:class:`realface.losses.IdentityLossConfig`; the paper's except λc = 375 instead of 3.75e3);
    the ``no_identity`` run uses the same with both weights 0, the ``baseline`` row the paper's
    weights with the same ``scale_to_resolution``. steps: inversion steps per face; inversion_batch:
    faces inverted together. freeze_res: fine-tuning also freezes the synthesis blocks at or below
    this resolution (``TrainConfig.freeze_res``). space: the inversion's latent space, ``"w"`` (the
    default: it transfers better here than the paper's ``"w+"``, see the README) or ``"w+"``
    (``InvertConfig.space``). held_out: held-out faces (≥ 2 for intervals).
    consistency_num: shared latents of the identity-consistency table (≥ 2). seed: every random draw.
    """

    world: str | None = None
    style: str = "cg"
    train_images: int = 2000
    kimg: float = 10.0
    batch: int = 16
    lr: float = 0.002
    gamma: float = 0.05
    identity: IdentityLossConfig = field(default_factory=lambda: IdentityLossConfig(color_weight=375.0))
    steps: int = 200
    inversion_batch: int = 32
    held_out: int = 32
    consistency_num: int = 512
    freeze_res: int = 0
    space: str = "w"
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.space not in ("w", "w+"):
            raise ConfigError(f"space must be 'w' or 'w+', got {self.space!r}")
        if self.style not in ("cg", "filter"):
            raise ConfigError(f"style must be 'cg' or 'filter', got {self.style!r}")
        if self.held_out < 2:
            raise ConfigError(f"held_out must be >= 2 (intervals need two samples), got {self.held_out}")
        if self.consistency_num < 2:
            raise ConfigError(
                f"consistency_num must be >= 2 (intervals need two samples), got {self.consistency_num}"
            )
        for name in ("kimg", "lr", "gamma"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {v}")
        if self.train_images < 4 or self.batch < 2 or self.steps < 1 or self.inversion_batch < 1:
            raise ConfigError(
                "train_images >= 4, batch >= 2, steps >= 1 and inversion_batch >= 1 are required"
            )

    @classmethod
    def quick(cls, **overrides: Any) -> TransferBenchConfig:
        """Tiny sizes for one CI test (the real code end to end, in about a minute)."""
        base: dict[str, Any] = dict(
            train_images=16, kimg=0.016, batch=4, steps=4, inversion_batch=4, held_out=4, consistency_num=8
        )
        base.update(overrides)
        return cls(**base)


#: Per-face measures of every row, all "lower is better".
METRICS = ("lpips", "l2", "param_error")


def invert_faces(
    G: Generator, targets: torch.Tensor, loss: TargetLoss, icfg: Any, batch: int, seed: int
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """Invert ``targets`` [N, 3, R, R] into ``G`` (``icfg``: an InvertConfig), ``batch`` faces at a
    time, face i with seed ``seed + i``: the latents [N, num_ws, w_dim] and the optimised noise maps
    (one [N, 1, r, r] per noise layer; None when the inversion optimised none)."""
    from realface.invert import invert

    ws, noises = [], []
    for s in range(0, targets.shape[0], batch):
        chunk = targets[s : s + batch]
        result = invert(G, chunk, loss, icfg, seeds=list(range(seed + s, seed + s + chunk.shape[0])))
        ws.append(result.ws)
        noises.append(result.noise)
    noise = None if noises[0] is None else [torch.cat(maps) for maps in zip(*noises, strict=True)]
    return torch.cat(ws), noise


def decode_faces(
    G: Generator,
    ws: torch.Tensor,
    noise: list[torch.Tensor] | None = None,
    layers: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """Decode latents [N, num_ws, w_dim] with ``G``: faces [N, 3, R, R] in [-1, 1]. With ``G``'s
    constant noise (the paper), or the given noise maps; ``layers``: the W+ layers taken from ``ws``,
    the others from ``G``'s w_avg (``ApplyConfig.transfer_layers``; None: all)."""
    from realface.pipeline import transfer

    if noise is None:
        return transfer(G, ws, layers).clamp(-1, 1)
    if layers is not None:
        raise ConfigError("decoding with the optimised noise and with some layers only cannot be combined")
    with torch.no_grad():
        return G.synthesis(ws, noise_mode="const", noise=noise).clamp(-1, 1)


def transfer_faces(
    G_invert: Generator,
    G_decode: Generator,
    targets: torch.Tensor,
    loss: TargetLoss,
    icfg: Any,
    batch: int,
    seed: int,
) -> torch.Tensor:
    """Realism transfer of ``targets`` [N, 3, R, R]: :func:`invert_faces` into ``G_invert``, then
    :func:`decode_faces` with ``G_decode`` and its constant noise. Faces [N, 3, R, R] in [-1, 1]."""
    ws, _ = invert_faces(G_invert, targets, loss, icfg, batch, seed)
    return decode_faces(G_decode, ws)


def score_faces(
    x: torch.Tensor, truth: torch.Tensor, params: torch.Tensor, lpips: Any, regressor: Any
) -> dict[str, list[float]]:
    """Per-face LPIPS, L2 (images in [0, 1]) and identity-parameter error of ``x`` against ``truth``
    (both [N, 3, R, R] in [-1, 1]; ``params`` [N, P] the true parameters)."""
    with torch.no_grad():
        return {
            "lpips": lpips(x, truth).flatten().tolist(),
            "l2": (((x + 1) / 2 - (truth + 1) / 2).square().mean(dim=[1, 2, 3])).tolist(),
            "param_error": regressor.identity_error(x, params).tolist(),
        }


def paired_difference(a: dict[str, list[float]], b: dict[str, list[float]]) -> dict[str, dict]:
    """Per metric: mean and 95 % interval of the paired difference a - b over the same faces, and the
    verdict ("a better" when the whole interval is below 0, "b better" above, else no clear
    difference)."""
    out = {}
    for m in METRICS:
        mean, lo, hi = mean_ci(np.asarray(a[m]) - np.asarray(b[m]))
        verdict = "a better" if hi < 0 else "b better" if lo > 0 else "no clear difference"
        out[m] = {"mean_diff": mean, "ci95": [lo, hi], "verdict": verdict}
    return out


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
    """The fixed pixel-filter style T: [N, 3, H, W] in [-1, 1] -> same shape and range.

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


def render_style(p: torch.Tensor, style: str, res: int) -> torch.Tensor:
    """The "rendered" version of faces ``p``: [N, 3, res, res] in [-1, 1]."""
    if style == "cg":
        return render_cg(p, res)
    return rendering_style(render_photo(p, res))


def _save_png(img: torch.Tensor, path: Path) -> None:
    from realface.utils.fs import atomic_path

    arr = ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def _random_vgg(path: Path) -> Path:
    """Seeded random VGG16 weights in torchvision's layout: a stand-in where the ImageNet file is absent."""
    import torchvision

    if not path.is_file():
        torch.manual_seed(0)
        features = torchvision.models.vgg16(weights=None).features
        from realface.utils.fs import atomic_path

        with atomic_path(path) as tmp:
            torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, tmp)
    return path


def run_transfer_bench(
    out: str | Path,
    cfg: TransferBenchConfig = TransferBenchConfig(),
    lpips_vgg: str | None = None,
    progress: bool = True,
) -> dict:
    """Run the benchmark; writes ``out/results.json``, ``out/results.md`` and ``out/examples.png``.

    ``lpips_vgg``: a torchvision VGG16 state dict for LPIPS (default: the weights cache), or
    ``"random"`` for seeded random weights (a stand-in, named in the report). Returns the results dict.
    """
    from realface.bench.world import load_world
    from realface.checkpoints import save_networks
    from realface.invert import InvertConfig, LpipsLoss
    from realface.nn.lpips import load_lpips_vgg
    from realface.pipeline import ApplyConfig, RealFace
    from realface.train.loop import TrainConfig, Trainer
    from realface.utils.fs import atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    world = load_world(cfg.world)
    G_real, res = world.G_real, world.G_real.img_resolution
    real_file = save_networks({"G_ema": G_real, "D": world.D}, out / "g_real.safetensors")
    vgg = str(_random_vgg(out / "random_vgg16.pth")) if lpips_vgg == "random" else lpips_vgg
    lpips = load_lpips_vgg(vgg_path=vgg)
    timings: dict[str, float] = {}

    # 1. The unpaired training set of rendered faces.
    t0 = time.time()
    data = out / f"train_set_{cfg.style}"
    data.mkdir(exist_ok=True)
    p_train = sample_params(cfg.train_images, cfg.seed + 1)
    for start in range(0, cfg.train_images, 256):
        imgs = render_style(p_train[start : start + 256], cfg.style, res)
        for i, im in enumerate(imgs):
            f = data / f"{start + i:05d}.png"
            if not f.is_file():
                _save_png(im, f)
    timings["training_set"] = time.time() - t0

    # 2. Fine-tune G_rendering with and without the identity losses.
    generators = {}
    variants = [
        ("full", cfg.identity),
        ("no_identity", dataclasses.replace(cfg.identity, sketch_weight=0.0, color_weight=0.0)),
    ]
    for name, identity in variants:
        t0 = time.time()
        tcfg = TrainConfig(
            data=str(data),
            real=str(real_file),
            out=str(out / f"run_{name}"),
            kimg=cfg.kimg,
            batch=cfg.batch,
            lr=cfg.lr,
            gamma=cfg.gamma,
            kimg_per_tick=max(cfg.kimg / 6, 0.004),
            snap=1000,
            workers=0,
            lpips_vgg=vgg,
            seed=cfg.seed,
            grid_size=4,
            identity=identity,
            freeze_res=cfg.freeze_res,
        )
        trainer = Trainer(tcfg)
        trainer.run(progress=progress)
        generators[name] = trainer.G_ema.eval().requires_grad_(False)
        timings[f"fine_tune_{name}"] = time.time() - t0

    # 3. Identity consistency of each rendering generator with G_real on shared latents.
    from realface.bench.consistency import toy_consistency

    t0 = time.time()
    rendering_generators = {**generators, "oracle": world.G_oracle}
    consistency = {}
    for row in CONSISTENCY_ROWS:
        c = toy_consistency(
            world, rendering_generators[row], num=cfg.consistency_num, seed0=cfg.seed, lpips=lpips
        )
        consistency[row] = {"row": row, "label": CONSISTENCY_ROWS[row], **c}
    timings["consistency"] = time.time() - t0

    # 4. Held-out faces: input render, truth photo.
    p_star = sample_params(cfg.held_out, cfg.seed + 2)
    rendered = render_style(p_star, cfg.style, res)  # [N, 3, R, R]
    truth = render_photo(p_star, res)  # [N, 3, R, R]
    from realface.precision import resolve_precision

    precision = resolve_precision(cfg.precision, "cpu")
    icfg = InvertConfig(steps=cfg.steps, seed=cfg.seed, precision=precision, space=cfg.space)
    lpips_loss = LpipsLoss(lpips, 256)

    baseline_cfg = ApplyConfig(
        invert=icfg, baseline_loss=IdentityLossConfig(scale_to_resolution=cfg.identity.scale_to_resolution)
    )
    baseline_loss = RealFace(G_real, None, lpips, baseline_cfg).inversion_loss()
    outputs: dict[str, torch.Tensor] = {}
    plans = {
        "full": (generators["full"], rendered, lpips_loss),
        "no_identity": (generators["no_identity"], rendered, lpips_loss),
        "baseline": (G_real, rendered, baseline_loss),
        "direct": (G_real, rendered, lpips_loss),
        "oracle": (world.G_oracle, rendered, lpips_loss),
        "g_real_floor": (G_real, truth, lpips_loss),
    }
    for row, (G, targets, loss) in plans.items():
        t0 = time.time()
        outputs[row] = transfer_faces(G, G_real, targets, loss, icfg, cfg.inversion_batch, cfg.seed)
        timings[f"invert_{row}"] = time.time() - t0
        log.info("row %s: %.0f s", row, timings[f"invert_{row}"])
    outputs["rendering"] = rendered

    # 5. Scores per sample.
    per_sample = {row: score_faces(outputs[row], truth, p_star, lpips, world.regressor) for row in ROWS}
    rows = []
    for row, label in ROWS.items():
        entry: dict[str, Any] = {"row": row, "label": label}
        for m in METRICS:
            mean, lo, hi = mean_ci(per_sample[row][m])
            entry[m] = {"mean": mean, "ci95": [lo, hi]}
        rows.append(entry)
    comparisons = [
        {"a": a, "b": b, **paired_difference(per_sample[a], per_sample[b])} for a, b in COMPARISONS
    ]

    # 6. Reports.
    show = min(8, cfg.held_out)
    order = ("rendering", "full", "no_identity", "baseline", "direct", "oracle")
    grid = torch.cat(
        [torch.cat(list(outputs[r][:show]), 2) for r in order] + [torch.cat(list(truth[:show]), 2)], 1
    )
    _save_png(grid, out / "examples.png")
    result = {
        "config": dataclasses.asdict(cfg),
        "world": str(world.path),
        "world_info": world.info,
        "lpips_vgg": "random (seeded stand-in)"
        if lpips_vgg == "random"
        else (lpips_vgg or "tv-vgg16 (weights cache)"),
        "precision": precision,
        "rows": rows,
        "comparisons": comparisons,
        "consistency": list(consistency.values()),
        "per_sample": per_sample,
        "timings": timings,
        "seconds": time.time() - t_start,
        "examples": "examples.png rows: " + ", ".join(order) + ", truth",
    }
    atomic_write_text(out / "results.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "results.md", format_report(result))
    return result


def _fmt(entry: dict | None) -> str:
    if entry is None:
        return "-"
    value = entry.get("mean", entry.get("mean_diff"))
    if entry["ci95"] is None:
        return f"{value:.4f}"
    lo, hi = entry["ci95"]
    return f"{value:.4f} [{lo:.4f}, {hi:.4f}]"


def format_report(result: dict) -> str:
    """The Markdown tables of a result dict (rows with 95 % intervals, then paired differences)."""
    cfg = result["config"]
    lines = [
        f"style {cfg['style']}, {cfg['held_out']} held-out faces, {cfg['steps']} inversion steps in "
        f"{cfg.get('space', 'w+').upper()}, fine-tuning {cfg['kimg']} kimg"
        + (f" (synthesis blocks up to {cfg['freeze_res']} px frozen)" if cfg.get("freeze_res") else "")
        + f"; inversion in {result['precision']}; LPIPS VGG: {result['lpips_vgg']}; "
        f"{result['seconds'] / 60:.1f} min",
        "",
        "| row | LPIPS ↓ | L2 ↓ | identity-parameter error ↓ |",
        "|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['label']} | {_fmt(r['lpips'])} | {_fmt(r['l2'])} | {_fmt(r['param_error'])} |")
    lines += ["", "| paired difference (a − b) | LPIPS | L2 | parameter error |", "|---|---|---|---|"]
    for c in result["comparisons"]:
        cells = [f"{_fmt(c[m])} {c[m]['verdict']}" for m in ("lpips", "l2", "param_error")]
        lines.append(f"| {c['a']} − {c['b']} | " + " | ".join(cells) + " |")
    consistency = result.get("consistency") or []
    if consistency:
        lines += [
            "",
            f"identity consistency with G_real on {consistency[0]['num']} shared latents "
            f"({consistency[0]['protocol']})",
            "",
            "| rendering generator | parameter error vs G_real ↓ | parameter error vs truth ↓ "
            "| L2 vs CG render ↓ | LPIPS vs CG render ↓ |",
            "|---|---|---|---|---|",
        ]
        for c in consistency:
            lines.append(
                f"| {c['label']} | {_fmt(c['param_error'])} | {_fmt(c['param_error_truth'])} "
                f"| {_fmt(c['l2'])} | {_fmt(c.get('lpips'))} |"
            )
        lines.append(
            f"| floor: G_real vs truth | - | {_fmt(consistency[0]['param_error_real_truth'])} | - | - |"
        )
    return "\n".join(lines) + "\n"
