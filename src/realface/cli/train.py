"""`realface train` (fine-tune G_rendering; several GPUs through torchrun) and `realface export`."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import typer

from realface.cli import app
from realface.cli.common import PROGRESS_OPT
from realface.losses import IdentityLossConfig

log = logging.getLogger(__name__)


def _init_distributed() -> tuple[int, int, str]:
    """(rank, world, device) from torchrun's environment; a single process otherwise."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, "cuda" if torch.cuda.is_available() else "cpu"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        device = f"cuda:{local}"
    else:
        dist.init_process_group("gloo")
        device = "cpu"
    return dist.get_rank(), world, device


@app.command()
def train(
    data: Path = typer.Option(
        ..., "--data", help="Folder or .zip of aligned rendered faces (StyleGAN2-ADA layout)."
    ),
    real: str = typer.Option(
        ..., "--real", help="G_real checkpoint (official .pkl with G/D/G_ema, or realface)."
    ),
    out: Path = typer.Option(Path("runs/realface"), "--out", help="Run folder."),
    kimg: float = typer.Option(40.0, "--kimg", help="Training length in thousands of images (paper: 40)."),
    batch: int = typer.Option(32, "--batch", help="Global batch size (split over processes)."),
    lr: float = typer.Option(0.002, "--lr", help="Learning rate of G and D."),
    gamma: float = typer.Option(10.0, "--gamma", help="R1 weight."),
    sketch_weight: float = typer.Option(
        IdentityLossConfig.sketch_weight, "--sketch-weight", help="λs of the sketch loss (0 disables)."
    ),
    color_weight: float = typer.Option(
        IdentityLossConfig.color_weight, "--color-weight", help="λc of the colour loss (0 disables)."
    ),
    sketch_extractor: str = typer.Option(
        IdentityLossConfig.sketch_extractor, "--sketch-extractor", help="xdog (no weights) or dfe."
    ),
    identity_scale: bool = typer.Option(
        IdentityLossConfig.scale_to_resolution,
        "--identity-scale-to-resolution/--no-identity-scale-to-resolution",
        help="Scale the identity losses to images smaller than 512 / 256 px (blur σ and taps, λs).",
    ),
    pl_weight: float = typer.Option(2.0, "--pl-weight", help="Path-length regularisation weight."),
    ada: bool = typer.Option(True, "--ada/--no-ada", help="Adaptive discriminator augmentation."),
    ada_kimg: float = typer.Option(100.0, "--ada-kimg", help="ADA adjustment speed."),
    xflip: bool = typer.Option(True, "--mirror/--no-mirror", help="Also train on mirrored images."),
    kimg_per_tick: float = typer.Option(4.0, "--tick", help="kimg between stats lines."),
    snap: int = typer.Option(5, "--snap", help="Ticks between checkpoints and snapshot grids."),
    keep: int = typer.Option(3, "--keep", help="Checkpoints kept."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    workers: int = typer.Option(
        None, "--workers", help="Data loader processes [default: min(3, CPUs - 1), at least 0]."
    ),
    precision: str = typer.Option("fp32", "--precision", help="fp32, fp16 or bf16 (the last two on CUDA)."),
    allow_random_d: bool = typer.Option(False, "--allow-random-d", help="Start D from random weights."),
    freeze_res: int = typer.Option(
        0,
        "--freeze-res",
        help="Also freeze the synthesis blocks at or below this resolution (0: none, the paper; 8: "
        "the 4² and 8² blocks).",
    ),
    lpips_vgg: Path = typer.Option(None, "--lpips-vgg", help="VGG16 state dict for the colour loss."),
    resume: Path = typer.Option(None, "--resume", help="Continue this run (folder or checkpoint)."),
    progress: bool = PROGRESS_OPT,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved options and exit."),
) -> None:
    """Fine-tune G_rendering from G_real on aligned rendered faces (mapping and ToRGB frozen).

    Several GPUs: torchrun --nproc_per_node N -m realface train ...
    """
    from realface.train.dataset import default_workers
    from realface.train.loop import TrainConfig, Trainer

    cfg = TrainConfig(
        data=str(data),
        real=str(real),
        out=str(resume if resume is not None and out == Path("runs/realface") else out),
        kimg=kimg,
        batch=batch,
        lr=lr,
        gamma=gamma,
        identity=IdentityLossConfig(
            sketch_weight=sketch_weight,
            color_weight=color_weight,
            sketch_extractor=sketch_extractor,
            scale_to_resolution=identity_scale,
        ),
        pl_weight=pl_weight,
        ada=ada,
        ada_kimg=ada_kimg,
        xflip=xflip,
        kimg_per_tick=kimg_per_tick,
        snap=snap,
        keep=keep,
        seed=seed,
        workers=default_workers() if workers is None else workers,
        precision=precision,
        allow_random_d=allow_random_d,
        freeze_res=freeze_res,
        lpips_vgg=None if lpips_vgg is None else str(lpips_vgg),
    )
    if dry_run:
        typer.echo(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
        return
    rank, world, device = _init_distributed()
    trainer = Trainer(cfg, device=device, resume=None if resume is None else str(resume))
    run_dir = trainer.run(progress=progress)
    if rank == 0:
        typer.echo(f"done: {trainer.cur_nimg / 1000:.3f} kimg; run folder {run_dir}")


@app.command()
def export(
    run: Path = typer.Argument(..., help="A training run folder (or one of its checkpoints)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output G_rendering .safetensors."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Print the checkpoint that would be read, the network, the output path and format as JSON, "
        "and exit without writing.",
    ),
) -> None:
    """Write the run's latest G_ema as the G_rendering file that `realface apply --rendering` uses."""
    from realface.checkpoints import FORMAT_NAME, FORMAT_VERSION
    from realface.errors import ConfigError
    from realface.train.loop import export_generator, latest_checkpoint

    if out.suffix != ".safetensors":
        raise ConfigError(
            f"{out}: G_rendering is written as .safetensors; give a name ending in .safetensors"
        )
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; give the G_rendering file to write")
    if dry_run:
        plan: dict = {"run": str(run), "network": "G_ema", "out": str(out)}
        plan["format"] = f"{FORMAT_NAME} v{FORMAT_VERSION} (.safetensors)"
        plan["out_exists"] = out.exists()  # a real export replaces it atomically
        if run.exists():
            ckpt = latest_checkpoint(run)  # no complete checkpoint: the same error as a real export
            plan["checkpoint"] = str(ckpt)
            plan["kimg"] = _checkpoint_kimg(ckpt)
        else:
            plan["checkpoint"] = f"not present yet: {run} does not exist (train writes it)"
            plan["kimg"] = None
        typer.echo(json.dumps(plan, indent=2))
        return
    export_generator(run, out)
    typer.echo(f"wrote {out}")


def _checkpoint_kimg(ckpt: Path) -> float:
    """The kimg a checkpoint was written at, from its state.json (a CheckpointError names a bad file)."""
    from realface.errors import CheckpointError

    state = ckpt / "state.json"
    try:
        return json.loads(state.read_text(encoding="utf-8"))["cur_nimg"] / 1000
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{state}: cannot read cur_nimg ({exc})") from None
