"""`realface bench world` and `realface bench transfer`: the method measured where the truth is known."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from realface.cli import app
from realface.cli.common import PROGRESS_OPT
from realface.losses import IdentityLossConfig

bench_app = typer.Typer(help="Controlled benchmarks of the method.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("world")
def world(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the world (toyworld.safetensors, ...)."),
    quick: bool = typer.Option(False, "--quick", help="A tiny 32 px world in seconds (for tests)."),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: torch's default)."),
    precision: str = typer.Option(
        "auto", "--precision", help="auto (bf16 where the CPU has it), bf16 or fp32."
    ),
    progress: bool = PROGRESS_OPT,
) -> None:
    """Train the toy world from nothing: G_real (regression, then adversarial with D), G_oracle, regressor.

    The default settings made the world shipped with realface (realface/bench/data; about 1 h on a
    2-core CPU with bf16). Rerun the same command to resume after an interruption.
    """
    from tqdm import tqdm

    from realface.bench.world import WorldConfig, build_world

    cfg = WorldConfig.quick() if quick else WorldConfig()
    cfg = dataclasses.replace(cfg, threads=threads, precision=precision)
    bars: dict[str, tqdm] = {}

    def report(phase: str, it: int, total: int, loss: float) -> None:
        if not progress:
            return
        if phase not in bars:
            bars[phase] = tqdm(total=total, desc=phase, unit="it", initial=it - 1)
        bars[phase].update(1)
        bars[phase].set_postfix(loss=f"{loss:.4f}")

    build_world(out, cfg, progress=report)
    for bar in bars.values():
        bar.close()
    typer.echo(f"wrote {out}")


@bench_app.command("transfer")
def transfer(
    out: Path = typer.Option(
        Path("runs/bench_transfer"), "--out", "-o", help="Folder for the runs and results."
    ),
    world: Path = typer.Option(
        None, "--world", help="Toy world folder (default: the one shipped with realface)."
    ),
    style: str = typer.Option(
        "cg", "--style", help="Rendering style: cg (a CG drawing) or filter (a pixel filter)."
    ),
    steps: int = typer.Option(None, "--steps", help="Inversion steps per face (default 200)."),
    held_out: int = typer.Option(None, "--held-out", help="Held-out faces (default 32)."),
    kimg: float = typer.Option(None, "--kimg", help="Fine-tuning length in kimg (default 10)."),
    sketch_weight: float = typer.Option(
        IdentityLossConfig.sketch_weight, "--sketch-weight", help="λs of the full method (the paper's)."
    ),
    color_weight: float = typer.Option(
        None,
        "--color-weight",
        help="λc of the full method [default: 375; the paper's 3.75e3 is strong at 32 px].",
    ),
    scale_losses: bool = typer.Option(
        IdentityLossConfig.scale_to_resolution,
        "--scale-losses/--no-scale-losses",
        help="Scale the identity losses to the world's resolution (blur σ and taps, λs), for the full "
        "method and the baseline.",
    ),
    space: str = typer.Option(
        None,
        "--space",
        help="Latent space of every inversion: w (default; transfers better in the toy world) or w+ "
        "(the paper's).",
    ),
    freeze_res: int = typer.Option(
        None,
        "--freeze-res",
        help="Fine-tuning also freezes the synthesis blocks at or below this resolution (default 0: none).",
    ),
    consistency_num: int = typer.Option(
        None,
        "--consistency-num",
        help="Shared latents of the identity-consistency table (default 512; --quick: 8).",
    ),
    quick: bool = typer.Option(False, "--quick", help="Tiny sizes (a smoke run, about a minute on CPU)."),
    lpips_vgg: str = typer.Option(
        None,
        "--lpips-vgg",
        help="VGG16 state dict for LPIPS (default: cached), or 'random' (a seeded stand-in).",
    ),
    progress: bool = PROGRESS_OPT,
) -> None:
    """Fine-tune on rendered faces of the toy world, invert held-out renders, compare with the truth.

    Rows: full method, no identity losses, baseline, direct inversion, oracle, the rendering itself,
    and G_real's floor; each with a 95 % interval, then paired differences, then the identity
    consistency of each rendering generator (full, no identity losses, oracle) with G_real on shared
    latents. Writes OUT/results.json, OUT/results.md and OUT/examples.png.
    """
    from realface.bench.transfer import TransferBenchConfig, format_report, run_transfer_bench

    overrides: dict[str, Any] = {
        k: v
        for k, v in dict(
            world=None if world is None else str(world),
            style=style,
            steps=steps,
            held_out=held_out,
            kimg=kimg,
            consistency_num=consistency_num,
            freeze_res=freeze_res,
            space=space,
        ).items()
        if v is not None
    }
    cfg = TransferBenchConfig.quick(**overrides) if quick else TransferBenchConfig(**overrides)
    identity: dict[str, Any] = dict(sketch_weight=sketch_weight, scale_to_resolution=scale_losses)
    if color_weight is not None:
        identity["color_weight"] = color_weight
    cfg = dataclasses.replace(cfg, identity=dataclasses.replace(cfg.identity, **identity))
    result = run_transfer_bench(out, cfg, lpips_vgg=lpips_vgg, progress=progress)
    typer.echo(format_report(result), nl=False)
    typer.echo(f"results: {out / 'results.md'}")
