"""`realface apply` (the main job, over single images or whole catalogues) and `realface invert`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import typer

from realface.cli import app
from realface.cli.common import DEVICE_OPT, PROGRESS_OPT
from realface.imageio import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

DEFAULT_REAL = "sg2ada-ffhq1024"


def _load_lpips(vgg: Path | None, device):
    from realface.nn.lpips import load_lpips_vgg

    return load_lpips_vgg(device=device, vgg_path=vgg)


def _invert_config(steps, seed, coarse_to_fine, coarse_resolution, fine_steps, early_stop, noise):
    from realface.invert import InvertConfig

    return InvertConfig(
        steps=steps,
        seed=seed,
        coarse_to_fine=coarse_to_fine,
        coarse_resolution=coarse_resolution,
        fine_steps=fine_steps,
        early_stop_patience=early_stop,
        optimize_noise=noise,
    )


def _output_suffix(out_format: str | None) -> str | None:
    """``--format`` as an output suffix (``".png"``), refused unless it is one of the listed formats."""
    from realface.errors import ConfigError
    from realface.pipeline import OUTPUT_FORMATS

    if out_format is None:
        return None
    name = out_format.strip().lower().removeprefix(".").replace("jpeg", "jpg")
    if name not in OUTPUT_FORMATS:
        raise ConfigError(
            f"--format: {out_format!r} is not an output format; choose one of {', '.join(OUTPUT_FORMATS)}"
        )
    return "." + name


def _step_bar(enabled: bool, desc: str):
    """A per-item progress bar over inversion steps; returns (callback, close)."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="step", leave=False, dynamic_ncols=True)

    def callback(step: int, total: int, loss) -> None:
        if bar.total != total:
            bar.reset(total=total)
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.mean()):.4f}")

    return callback, bar.close


@app.command()
def apply(
    inputs: list[Path] = typer.Argument(..., help="Images and/or folders of images (searched recursively)."),
    outdir: Path = typer.Option(..., "--out", "-o", help="Output folder (mirrors the input folders)."),
    rendering: Path = typer.Option(
        None, "--rendering", help="Fine-tuned G_rendering (.safetensors/.pkl). Omit for the baseline mode."
    ),
    real: str = typer.Option(DEFAULT_REAL, "--real", help="G_real: a file or a weights id."),
    steps: int = typer.Option(500, "--steps", help="Inversion steps per face."),
    batch: int = typer.Option(4, "--batch", help="Faces inverted together (one forward pass)."),
    device: str = DEVICE_OPT,
    coarse_to_fine: bool = typer.Option(
        False, "--coarse-to-fine/--full-resolution", help="Most steps at low resolution (much faster on CPU)."
    ),
    coarse_resolution: int = typer.Option(128, "--coarse-resolution", help="Resolution of the coarse steps."),
    fine_steps: int = typer.Option(
        50, "--fine-steps", help="Full-resolution steps at the end (coarse-to-fine)."
    ),
    early_stop: int = typer.Option(
        None, "--early-stop", help="Stop a face after N steps without improvement."
    ),
    optimize_noise: bool = typer.Option(
        True, "--optimize-noise/--no-optimize-noise", help="Also fit noise maps."
    ),
    seed: int = typer.Option(303, "--seed", help="Seed of the inversion's random draws."),
    face_index: int = typer.Option(None, "--face-index", help="Only this face of each image (0 = largest)."),
    transfer_layers: str = typer.Option(
        None,
        "--transfer-layers",
        help="W+ layers taken from the inversion, e.g. '0-7' (others: G_real's mean).",
    ),
    mask: str = typer.Option("auto", "--mask", help="auto, landmarks or parsing."),
    color_correct: bool = typer.Option(True, "--color-correct/--no-color-correct", help="Lab colour match."),
    out_format: str = typer.Option(
        None, "--format", help="Output format: png, jpg or webp; default: the input's format."
    ),
    save_aligned: bool = typer.Option(False, "--save-aligned", help="Also write each aligned input face."),
    save_reconstruction: bool = typer.Option(
        False, "--save-reconstruction", help="Also write G_rendering's fit."
    ),
    save_realistic: bool = typer.Option(False, "--save-realistic", help="Also write each realistic face."),
    save_latents: bool = typer.Option(
        False, "--save-latents", help="Also write W+ and noise (.safetensors)."
    ),
    sheet: bool = typer.Option(False, "--sheet", help="Also write a comparison sheet per face."),
    lpips_vgg: Path = typer.Option(
        None, "--lpips-vgg", help="Use this VGG16 state dict for LPIPS instead of the cached tv-vgg16."
    ),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", help="Refuse larger images."),
    stop_on_error: bool = typer.Option(False, "--stop-on-error", help="Stop at the first failed image."),
    progress: bool = PROGRESS_OPT,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved configuration and exit."),
) -> None:
    """Replace the rendered faces in images with photo-realistic faces of the same identity.

    Resumable: outputs and OUT/manifest.jsonl record each image; a rerun skips finished images. Exit
    status 1 if any image failed (each failure is listed in the summary and the manifest).
    """
    from realface.face import BlendConfig, MaskConfig
    from realface.pipeline import ApplyConfig, RealFace, SaveOptions, parse_layers, run_catalogue, run_info
    from realface.utils.device import resolve_device

    suffix = _output_suffix(out_format)
    try:
        mask_cfg = MaskConfig(kind=mask)  # type: ignore[arg-type]
    except ValueError as exc:
        from realface.errors import ConfigError

        raise ConfigError(f"--mask: {exc}") from None
    cfg = ApplyConfig(
        invert=_invert_config(
            steps, seed, coarse_to_fine, coarse_resolution, fine_steps, early_stop, optimize_noise
        ),
        mask=mask_cfg,
        blend=BlendConfig(color_correct=color_correct),
        save=SaveOptions(save_aligned, save_reconstruction, save_realistic, save_latents, sheet),
        face_index=face_index,
        transfer_layers=parse_layers(transfer_layers),
        batch_size=batch,
        max_pixels=max_pixels,
    )
    info = run_info(real, rendering, cfg)
    if dry_run:
        typer.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    from realface.pipeline import plan_catalogue

    plan_catalogue(inputs, outdir, cfg, suffix)  # bad inputs or colliding outputs stop before any model loads
    from realface.weights import apply_weight_ids, require_weights

    require_weights(apply_weight_ids(real, lpips_vgg, mask), progress=progress)  # all missing ones at once
    dev = resolve_device(device)
    # Load everything before the first image, so missing weights stop the run at once.
    from realface.checkpoints import load_generator

    G_real = load_generator(real, device=dev)
    G_rendering = load_generator(rendering, device=dev) if rendering is not None else None
    job = RealFace(G_real, G_rendering, _load_lpips(lpips_vgg, dev), cfg, device=dev)
    summary = run_catalogue(
        job,
        inputs,
        outdir,
        info,
        suffix=suffix,
        progress=progress,
        stop_on_error=stop_on_error,
        step_callback=lambda ctx: _step_bar(progress, ctx.key),
    )
    typer.echo(summary.format())
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


@app.command()
def invert(
    images: list[Path] = typer.Argument(..., help="Aligned face crops (as written by `realface align`)."),
    network: str = typer.Option(..., "--network", help="Generator to invert into (file or weights id)."),
    outdir: Path = typer.Option(
        ..., "--out", "-o", help="Folder for NAME_latent.safetensors and NAME_proj.png."
    ),
    steps: int = typer.Option(500, "--steps", help="Optimisation steps."),
    batch: int = typer.Option(4, "--batch", help="Images inverted together."),
    device: str = DEVICE_OPT,
    coarse_to_fine: bool = typer.Option(
        False, "--coarse-to-fine/--full-resolution", help="Coarse steps first."
    ),
    coarse_resolution: int = typer.Option(128, "--coarse-resolution", help="Resolution of the coarse steps."),
    fine_steps: int = typer.Option(50, "--fine-steps", help="Full-resolution steps at the end."),
    early_stop: int = typer.Option(None, "--early-stop", help="Stop after N steps without improvement."),
    optimize_noise: bool = typer.Option(
        True, "--optimize-noise/--no-optimize-noise", help="Also fit noise maps."
    ),
    seed: int = typer.Option(303, "--seed", help="Seed of the random draws."),
    lpips_vgg: Path = typer.Option(None, "--lpips-vgg", help="VGG16 state dict for LPIPS (default: cached)."),
    progress: bool = PROGRESS_OPT,
) -> None:
    """Project aligned faces into a generator's W+ space (LPIPS + noise regularisation).

    Each image must be an aligned face at the generator's resolution (`realface align`). Resumable: an
    image is skipped when its latent file records the same input and the same settings (network,
    LPIPS weights and every inversion option); otherwise it is inverted again.
    """
    import numpy as np
    import torch
    from PIL import Image

    from realface.batch import hash_config
    from realface.checkpoints import load_generator
    from realface.errors import ConfigError
    from realface.imageio import load_image
    from realface.invert import LpipsLoss, check_aligned_size
    from realface.invert import invert as run_invert
    from realface.pipeline import save_latent
    from realface.sampling import to_uint8
    from realface.utils.device import resolve_device
    from realface.utils.fs import atomic_path

    cfg = _invert_config(
        steps, seed, coarse_to_fine, coarse_resolution, fine_steps, early_stop, optimize_noise
    )
    settings = hash_config({"network": network, "lpips_vgg": lpips_vgg, "invert": dataclasses.asdict(cfg)})
    stems: dict[str, Path] = {}
    for path in images:
        if path.stem in stems:
            raise ConfigError(
                f"{stems[path.stem]} and {path} would both be written as {path.stem}_latent.safetensors "
                f"in {outdir}; rename one or invert them into separate folders"
            )
        stems[path.stem] = path
    dev = resolve_device(device)
    G = load_generator(network, device=dev)
    loss = LpipsLoss(_load_lpips(lpips_vgg, dev), cfg.loss_resolution)
    R = G.img_resolution
    todo = []
    for path in images:  # every image is checked before the first inversion
        img = load_image(path)
        check_aligned_size(img.size, R, str(path))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        latent = outdir / f"{path.stem}_latent.safetensors"
        if _inverted_with(latent, settings, digest) and (outdir / f"{path.stem}_proj.png").is_file():
            log.info("%s: already inverted with these settings, skipped", path)
            continue
        todo.append((path, digest, np.asarray(img.rgb8(), dtype=np.float32) / 127.5 - 1))
    if todo:
        outdir.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        targets = torch.from_numpy(np.stack([t for _, _, t in chunk])).permute(0, 3, 1, 2).to(dev)
        callback, close = _step_bar(progress, f"images {start + 1}-{start + len(chunk)}")
        try:
            res = run_invert(G, targets, loss, cfg, callback=callback)
        finally:
            close()
        with torch.no_grad():
            proj = to_uint8(G.synthesis(res.ws, noise_mode="const", noise=res.noise))
        for i, (path, digest, _) in enumerate(chunk):
            with atomic_path(outdir / f"{path.stem}_proj.png") as tmp:
                Image.fromarray(proj[i]).save(tmp, format="PNG")
            meta = {
                "network": network,
                "loss": float(res.final_loss[i]),
                "steps": res.steps_run,
                "config": json.dumps(dataclasses.asdict(cfg), sort_keys=True),
                "settings_hash": settings,
                "input_sha256": digest,
            }
            save_latent(outdir / f"{path.stem}_latent.safetensors", res, i, meta)  # written last: the marker
            typer.echo(
                f"{path}: loss {float(res.final_loss[i]):.4f} -> {outdir / (path.stem + '_latent.safetensors')}"
            )


def _inverted_with(latent: Path, settings: str, digest: str) -> bool:
    """Whether ``latent`` is a complete latent file made from the input ``digest`` with ``settings``."""
    from safetensors import SafetensorError, safe_open

    if not latent.is_file():
        return False
    try:
        with safe_open(str(latent), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError):
        return False
    return meta.get("settings_hash") == settings and meta.get("input_sha256") == digest
