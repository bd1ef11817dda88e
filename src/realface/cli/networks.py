"""`realface convert` and `realface generate`."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from PIL import Image
from tqdm import tqdm

from realface.cli import app
from realface.cli.common import DEVICE_OPT, PROGRESS_OPT, config_option
from realface.sampling import SampleConfig

log = logging.getLogger(__name__)


@app.command()
def convert(
    src: Path = typer.Argument(..., help="Official StyleGAN2-ADA network pickle (.pkl)."),
    dst: Path = typer.Argument(..., help="Output realface network file (.safetensors)."),
    only: list[str] = typer.Option(
        None, "--only", help="Convert only these networks (G, D, G_ema); repeatable. Default: all present."
    ),
) -> None:
    """Convert an official StyleGAN2-ADA pickle to safetensors, without executing code from the pickle."""
    from realface.checkpoints import convert_pickle, read_network_records

    convert_pickle(src, dst, only=tuple(only) if only else None)
    names = ", ".join(f"{n} ({r.class_name})" for n, r in read_network_records(dst).items())
    typer.echo(f"wrote {dst}: {names}")


@app.command()
def generate(
    network: Path = typer.Option(..., "--network", help="Generator: official .pkl or realface .safetensors."),
    seeds: str = typer.Option("0-7", "--seeds", help="Seeds, e.g. '0-7' or '1,5,9-12'."),
    trunc: float = config_option(
        SampleConfig, "truncation_psi", "--trunc", help="Truncation psi (1 = no truncation)."
    ),
    trunc_cutoff: int = config_option(
        SampleConfig, "truncation_cutoff", "--trunc-cutoff", help="Truncate only the first N ws."
    ),
    noise_mode: str = config_option(
        SampleConfig, "noise_mode", "--noise-mode", help="Noise: const, random or none."
    ),
    class_idx: int = config_option(
        SampleConfig, "class_idx", "--class", help="Class index for conditional networks."
    ),
    outdir: Path = typer.Option(..., "--outdir", "-o", help="Where to write seedNNNN.png."),
    grid: bool = typer.Option(False, "--grid", help="Also write grid.png with all images."),
    device: str = DEVICE_OPT,
    progress: bool = PROGRESS_OPT,
) -> None:
    """Generate images from seeds, as the official generate.py (PNG per seed, optional grid)."""
    from realface.checkpoints import load_generator
    from realface.sampling import generate as sample
    from realface.sampling import make_grid, parse_seeds
    from realface.utils.device import resolve_device
    from realface.utils.fs import atomic_path

    cfg = SampleConfig(
        seeds=tuple(parse_seeds(seeds)),
        truncation_psi=trunc,
        truncation_cutoff=trunc_cutoff,
        noise_mode=noise_mode,
        class_idx=class_idx,
    )
    dev = resolve_device(device)
    G = load_generator(network, device=dev)
    images = []
    for seed, img in tqdm(sample(G, cfg, dev), total=len(cfg.seeds), disable=not progress, unit="img"):
        with atomic_path(outdir / f"seed{seed:04d}.png") as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
        if grid:
            images.append(img)
    if grid:
        with atomic_path(outdir / "grid.png") as tmp:
            Image.fromarray(make_grid(images)).save(tmp, format="PNG")
    typer.echo(f"wrote {len(cfg.seeds)} image(s) to {outdir}")
