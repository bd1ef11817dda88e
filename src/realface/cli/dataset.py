"""`realface dataset build` and `realface dataset export-urls` (registered on import)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from realface.cli import app
from realface.cli.common import PROGRESS_OPT
from realface.errors import ConfigError
from realface.imageio import DEFAULT_MAX_PIXELS

logger = logging.getLogger(__name__)

dataset_app = typer.Typer(
    name="dataset",
    help="Build aligned training sets from URL lists or folders of renders.",
    no_args_is_help=True,
)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("build")
def build_command(
    out: Path = typer.Option(..., "--out", "-o", help="The dataset: a folder, or a file ending in .zip."),
    urls: Path | None = typer.Option(None, "--urls", help="URL list: .json, .csv or plain text."),
    images: Path | None = typer.Option(None, "--images", help="Folder of images (searched recursively)."),
    size: int = typer.Option(1024, "--size", help="Aligned crop size: 256, 512 or 1024."),
    workers: int = typer.Option(8, "--workers", help="Parallel downloads."),
    rate: float = typer.Option(2.0, "--rate", help="Requests per second per host (0: no limit)."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for a connection or data."),
    retries: int = typer.Option(3, "--retries", help="Retries per URL after a passing failure."),
    min_face_size: int | None = typer.Option(
        None, "--min-face-size", help="Smallest face crop side in source px (default: size / 2)."
    ),
    blur_threshold: float = typer.Option(4.0, "--blur-threshold", help="Smallest Laplacian variance."),
    max_yaw: float = typer.Option(40.0, "--max-yaw", help="Largest estimated |yaw| in degrees."),
    max_pitch: float = typer.Option(30.0, "--max-pitch", help="Largest estimated |pitch| in degrees."),
    dup_distance: int = typer.Option(6, "--dup-distance", help="Perceptual-hash bits that make a duplicate."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", help="Refuse larger images."),
    cnn: bool = typer.Option(True, "--cnn/--no-cnn", help="Try dlib's CNN detector when HOG finds nothing."),
    keep_downloads: bool = typer.Option(False, "--keep-downloads", help="Keep downloaded files."),
    work: Path | None = typer.Option(None, "--work", help="Build folder (default: OUT.build beside OUT)."),
    progress: bool = PROGRESS_OPT,
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing .zip at --out even if this build did not make it."
    ),
) -> None:
    """Fetch, detect, FFHQ-align and filter faces into a StyleGAN2-ADA dataset (resumable)."""
    from realface.data import BuildConfig, FetchConfig, build_dataset, read_url_list

    if (urls is None) == (images is None):
        raise ConfigError("give exactly one of --urls FILE or --images DIR")
    try:
        config = BuildConfig(
            size=size,
            min_face_size=min_face_size,
            blur_threshold=blur_threshold,
            max_yaw=max_yaw,
            max_pitch=max_pitch,
            dup_distance=dup_distance,
            max_pixels=max_pixels,
            cnn_fallback=cnn,
            keep_downloads=keep_downloads,
            fetch=FetchConfig(workers=workers, rate_per_host=rate, timeout=timeout, retries=retries),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    items = read_url_list(urls) if urls is not None else None
    summary = build_dataset(
        out, urls=items, images=images, config=config, work=work, progress=progress, overwrite=overwrite
    )
    typer.echo(summary.format())
    if summary.interrupted:
        sys.exit(130)
    if summary.images == 0:
        raise ConfigError(f"no face was kept; see why in {Path(summary.work) / 'manifest.jsonl'}")


@dataset_app.command("export-urls")
def export_urls_command(
    build: Path = typer.Argument(
        ..., help="A dataset made by `realface dataset build`, or its build folder."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The list to write: .json or .csv."),
) -> None:
    """Write a publishable list (URL, sha256, licence, source, landmarks) to rebuild the set from."""
    from realface.data import export_urls

    written, local = export_urls(build, out)
    note = f" ({local} face(s) from local files have no URL and were left out)" if local else ""
    typer.echo(f"wrote {written} URL(s) to {out}{note}")
