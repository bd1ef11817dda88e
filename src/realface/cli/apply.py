"""`realface apply` (the main job, over single images or whole catalogues) and `realface invert`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from realface.cli import app
from realface.cli.common import (
    BATCH_OPT,
    COARSE_RESOLUTION_OPT,
    COARSE_TO_FINE_OPT,
    COLOR_CORRECT_OPT,
    DETECTOR_OPT,
    DEVICE_OPT,
    EARLY_STOP_OPT,
    FINE_STEPS_OPT,
    LPIPS_VGG_OPT,
    MASK_OPT,
    MAX_PIXELS_HELP,
    MIN_FACE_OPT,
    OPTIMIZE_NOISE_OPT,
    PRECISION_OPT,
    PROGRESS_OPT,
    SEED_OPT,
    SPACE_OPT,
    STEPS_OPT,
    THRESHOLD_OPT,
    config_option,
    invert_config,
    make_config,
    mask_config,
)
from realface.face.detect import DetectConfig
from realface.pipeline import ApplyConfig, SaveOptions

if TYPE_CHECKING:
    import torch

    from realface.nn.lpips import LPIPS

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int, "torch.Tensor"], None]

DEFAULT_REAL = "sg2ada-ffhq1024"


def _load_lpips(vgg: Path | None, device: torch.device) -> LPIPS:
    from realface.nn.lpips import load_lpips_vgg

    return load_lpips_vgg(device=device, vgg_path=vgg)


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


def _faces_source(faces: Path | None) -> str | None:
    """``--faces`` as the config's string, refused at once when it is neither a file nor a folder."""
    from realface.errors import ConfigError

    if faces is None:
        return None
    if not (faces.is_file() or faces.is_dir()):
        raise ConfigError(f"--faces: {faces}: no such faces file or folder")
    return str(faces)


def _step_bar(enabled: bool, desc: str) -> tuple[StepCallback | None, Callable[[], None]]:
    """A per-item progress bar over inversion steps; returns (callback, close)."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="step", leave=False, dynamic_ncols=True)

    def callback(step: int, total: int, loss: torch.Tensor) -> None:
        if bar.total != total:
            bar.reset(total=total)
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.mean()):.4f}")

    return callback, bar.close


def _save_option(name: str, help: str) -> Any:
    """``--save-NAME``: one of the per-face extras of :class:`SaveOptions`."""
    return config_option(SaveOptions, name, f"--save-{name}", help=help)


@app.command()
def apply(
    inputs: list[Path] = typer.Argument(..., help="Images and/or folders of images (searched recursively)."),
    outdir: Path = typer.Option(..., "--out", "-o", help="Output folder (mirrors the input folders)."),
    rendering: Path = typer.Option(
        None, "--rendering", help="Fine-tuned G_rendering (.safetensors/.pkl). Omit for the baseline mode."
    ),
    real: str = typer.Option(DEFAULT_REAL, "--real", help="G_real: a file or a weights id."),
    steps: int = STEPS_OPT,
    batch: int = BATCH_OPT,
    device: str = DEVICE_OPT,
    coarse_to_fine: bool = COARSE_TO_FINE_OPT,
    coarse_resolution: int = COARSE_RESOLUTION_OPT,
    fine_steps: int = FINE_STEPS_OPT,
    early_stop: int = EARLY_STOP_OPT,
    optimize_noise: bool = OPTIMIZE_NOISE_OPT,
    seed: int = SEED_OPT,
    precision: str = PRECISION_OPT,
    space: str = SPACE_OPT,
    face_index: int = config_option(
        ApplyConfig, "face_index", "--face-index", help="Only this face of each image (0 = largest)."
    ),
    detector: str = DETECTOR_OPT,
    threshold: float | None = THRESHOLD_OPT,
    min_face_size: int = MIN_FACE_OPT,
    faces: Path | None = config_option(
        ApplyConfig,
        "faces",
        "--faces",
        help="FACES.json (as `realface align` writes, or boxes/landmarks in the realface.faces/1 format) or a "
        "folder of them (STEM_faceI.json or STEM.faces.json per image): process exactly these faces, no "
        "detection.",
    ),
    transfer_layers: str = typer.Option(
        None,
        "--transfer-layers",
        help="W+ layers taken from the inversion, e.g. '0-7' (others: G_real's mean).",
    ),
    mask: str = MASK_OPT,
    color_correct: bool = COLOR_CORRECT_OPT,
    out_format: str = typer.Option(
        None, "--format", help="Output format: png, jpg or webp; default: the input's format."
    ),
    save_aligned: bool = _save_option("aligned", "Also write each aligned input face."),
    save_reconstruction: bool = _save_option("reconstruction", "Also write G_rendering's fit."),
    save_realistic: bool = _save_option("realistic", "Also write each realistic face."),
    save_latents: bool = _save_option("latents", "Also write W+ and noise (.safetensors)."),
    sheet: bool = config_option(
        SaveOptions, "sheet", "--sheet", help="Also write a comparison sheet per face."
    ),
    lpips_vgg: Path = LPIPS_VGG_OPT,
    max_pixels: int = config_option(ApplyConfig, "max_pixels", "--max-pixels", help=MAX_PIXELS_HELP),
    stop_on_error: bool = typer.Option(False, "--stop-on-error", help="Stop at the first failed image."),
    workers: int = typer.Option(
        None,
        "--workers",
        min=1,
        help="Images run at once, each in a single-threaded process (default: one per CPU core on the "
        "CPU, 1 on a GPU). 1: every image in this process, with torch's threads.",
    ),
    progress: bool = PROGRESS_OPT,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved configuration and exit."),
) -> None:
    """Replace the rendered faces in images with photo-realistic faces of the same identity.

    Resumable: outputs and OUT/manifest.jsonl record each image; a rerun skips finished images. Exit
    status 1 if any image failed (each failure is listed in the summary and the manifest).
    """
    from realface.face import BlendConfig
    from realface.pipeline import RealFace, parse_layers, run_catalogue, run_info
    from realface.utils.device import resolve_device

    suffix = _output_suffix(out_format)
    mask_cfg = mask_config(mask)
    cfg = make_config(
        ApplyConfig,
        invert=invert_config(
            steps,
            seed,
            coarse_to_fine,
            coarse_resolution,
            fine_steps,
            early_stop,
            optimize_noise,
            precision,
            space,
        ),
        mask=mask_cfg,
        blend=make_config(BlendConfig, color_correct=color_correct),
        save=SaveOptions(save_aligned, save_reconstruction, save_realistic, save_latents, sheet),
        face_index=face_index,
        transfer_layers=parse_layers(transfer_layers),
        batch_size=batch,
        max_pixels=max_pixels,
        detect=make_config(DetectConfig, detector=detector, threshold=threshold, min_face_size=min_face_size),
        faces=_faces_source(faces),
    )
    info = run_info(real, rendering, cfg)
    if dry_run:
        typer.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    from realface.pipeline import plan_catalogue

    # bad inputs or colliding outputs stop before any model loads
    images, _ = plan_catalogue(inputs, outdir, cfg, suffix)
    from realface.weights import apply_weight_ids, require_weights

    require_weights(
        apply_weight_ids(real, lpips_vgg, mask, detector), progress=progress
    )  # all missing ones at once
    dev = resolve_device(device)
    # Load everything before the first image, so missing weights stop the run at once.
    from realface.checkpoints import load_generator

    G_real = load_generator(real, device=dev)
    G_rendering = load_generator(rendering, device=dev) if rendering is not None else None
    job = RealFace(G_real, G_rendering, _load_lpips(lpips_vgg, dev), cfg, device=dev)
    if workers is None:
        from realface.workers import default_apply_workers, worker_memory

        need = worker_memory([G_real, G_rendering, job.lpips], G_real.img_resolution, cfg.batch_size)
        workers = default_apply_workers(dev, need)
    if min(workers, len(images)) > 1:
        # The job was built here only to check it; each worker loads its own copy.
        del job, G_real, G_rendering
        from realface.workers import catalogue_setup, run_catalogue_workers

        summary = run_catalogue_workers(
            catalogue_setup(real, rendering, lpips_vgg, cfg, str(dev)),
            cfg,
            inputs,
            outdir,
            info,
            workers=workers,
            suffix=suffix,
            progress=progress,
            stop_on_error=stop_on_error,
        )
        typer.echo(summary.format())
        if summary.exit_code:
            raise typer.Exit(summary.exit_code)
        return
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
    steps: int = STEPS_OPT,
    batch: int = BATCH_OPT,
    device: str = DEVICE_OPT,
    coarse_to_fine: bool = COARSE_TO_FINE_OPT,
    coarse_resolution: int = COARSE_RESOLUTION_OPT,
    fine_steps: int = FINE_STEPS_OPT,
    early_stop: int = EARLY_STOP_OPT,
    optimize_noise: bool = OPTIMIZE_NOISE_OPT,
    seed: int = SEED_OPT,
    precision: str = PRECISION_OPT,
    space: str = SPACE_OPT,
    lpips_vgg: Path = LPIPS_VGG_OPT,
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
    from realface.invert import check_aligned_size
    from realface.pipeline import projector, save_latent
    from realface.sampling import to_uint8
    from realface.utils.device import resolve_device
    from realface.utils.fs import atomic_path

    cfg = invert_config(
        steps,
        seed,
        coarse_to_fine,
        coarse_resolution,
        fine_steps,
        early_stop,
        optimize_noise,
        precision,
        space,
    )
    job_cfg = make_config(ApplyConfig, invert=cfg, batch_size=batch)
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
    job = projector(G, _load_lpips(lpips_vgg, dev), job_cfg, device=dev)
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
        todo.append((path, digest, np.asarray(img.rgb8(), dtype=np.float32) / 255.0))
    if todo:
        outdir.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(todo), batch):  # one progress bar per batch of faces
        chunk = todo[start : start + batch]
        callback, close = _step_bar(progress, f"images {start + 1}-{start + len(chunk)}")
        try:
            res = job.invert_faces(np.stack([t for _, _, t in chunk]), progress=callback)
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
