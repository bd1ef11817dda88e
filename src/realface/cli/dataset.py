"""`realface dataset build`, `realface dataset presets` and `realface dataset export-urls` (registered on import)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer

from realface.cli import app
from realface.cli.common import MAX_PIXELS_HELP, PROGRESS_OPT, config_option, make_config
from realface.data import BuildConfig, FetchConfig
from realface.errors import ConfigError

logger = logging.getLogger(__name__)

dataset_app = typer.Typer(
    name="dataset",
    help="Build aligned training sets from URL lists or folders of renders.",
    no_args_is_help=True,
)
app.add_typer(dataset_app, name="dataset")


def _build_option(name: str, decl: str, help: str) -> Any:
    """An option of ``dataset build`` whose default is :class:`BuildConfig`'s ``name``."""
    return config_option(BuildConfig, name, decl, help=help)


@dataset_app.command("build")
def build_command(
    out: Path = typer.Option(..., "--out", "-o", help="The dataset: a folder, or a file ending in .zip."),
    urls: Path | None = typer.Option(None, "--urls", help="URL list: .json, .csv or plain text."),
    images: Path | None = typer.Option(None, "--images", help="Folder of images (searched recursively)."),
    preset: str | None = typer.Option(
        None, "--preset", help="A public set of rendered faces (see `realface dataset presets`)."
    ),
    limit: int | None = typer.Option(None, "--limit", help="With --preset: use only the first N images."),
    images_from: list[Path] = typer.Option(
        [], "--images-from", help="With --preset: an archive downloaded by hand (repeatable)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="With --preset: print the plan (archives, licence, settings) and exit."
    ),
    size: int = _build_option("size", "--size", "Aligned crop size: 256, 512 or 1024."),
    workers: int = config_option(FetchConfig, "workers", "--workers", help="Parallel downloads."),
    rate: float = config_option(
        FetchConfig, "rate_per_host", "--rate", help="Requests per second per host (0: no limit)."
    ),
    timeout: float = config_option(
        FetchConfig, "timeout", "--timeout", help="Seconds to wait for a connection or data."
    ),
    retries: int = config_option(
        FetchConfig, "retries", "--retries", help="Retries per URL after a passing failure."
    ),
    min_face_size: int | None = _build_option(
        "min_face_size", "--min-face-size", "Smallest face crop side in source px (default: size / 2)."
    ),
    blur_threshold: float = _build_option(
        "blur_threshold", "--blur-threshold", "Smallest Laplacian variance."
    ),
    max_yaw: float = _build_option("max_yaw", "--max-yaw", "Largest estimated |yaw| in degrees."),
    max_pitch: float = _build_option("max_pitch", "--max-pitch", "Largest estimated |pitch| in degrees."),
    dup_distance: int = _build_option(
        "dup_distance", "--dup-distance", "Perceptual-hash bits that make a duplicate."
    ),
    max_pixels: int = _build_option("max_pixels", "--max-pixels", MAX_PIXELS_HELP),
    cnn: bool = _build_option(
        "cnn_fallback", "--cnn/--no-cnn", "Try dlib's CNN detector when HOG finds nothing."
    ),
    keep_downloads: bool = _build_option("keep_downloads", "--keep-downloads", "Keep downloaded files."),
    work: Path | None = typer.Option(None, "--work", help="Build folder (default: OUT.build beside OUT)."),
    progress: bool = PROGRESS_OPT,
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing .zip at --out even if this build did not make it."
    ),
) -> None:
    """Fetch, detect, FFHQ-align and filter faces into a StyleGAN2-ADA dataset (resumable)."""
    from realface.data import build_dataset, read_url_list

    if sum(x is not None for x in (urls, images, preset)) != 1:
        raise ConfigError("give exactly one of --urls FILE, --images DIR or --preset NAME")
    if preset is None and (limit is not None or images_from or dry_run):
        raise ConfigError("--limit, --images-from and --dry-run go with --preset NAME")
    fetch = make_config(FetchConfig, workers=workers, rate_per_host=rate, timeout=timeout, retries=retries)
    limits = {"min_face_size": min_face_size, "max_yaw": max_yaw, "max_pitch": max_pitch}
    config = make_config(
        BuildConfig,
        size=size,
        blur_threshold=blur_threshold,
        dup_distance=dup_distance,
        max_pixels=max_pixels,
        cnn_fallback=cnn,
        keep_downloads=keep_downloads,
        fetch=fetch,
        **limits,
    )
    if preset is not None:
        _build_preset(preset, out, config, limit, images_from, work, progress, overwrite, dry_run)
        return
    items = read_url_list(urls) if urls is not None else None
    summary = build_dataset(
        out, urls=items, images=images, config=config, work=work, progress=progress, overwrite=overwrite
    )
    typer.echo(summary.format())
    if summary.interrupted:
        sys.exit(130)
    if summary.images == 0:
        raise ConfigError(f"no face was kept; see why in {Path(summary.work) / 'manifest.jsonl'}")


def _build_preset(
    name: str,
    out: Path,
    config: BuildConfig,
    limit: int | None,
    images_from: list[Path],
    work: Path | None,
    progress: bool,
    overwrite: bool,
    dry_run: bool,
) -> None:
    from realface.data.presets import build_preset, get_preset, preset_plan

    record = get_preset(name)
    if dry_run:
        typer.echo(
            json.dumps(
                preset_plan(record, out, config=config, limit=limit, images_from=images_from), indent=2
            )
        )
        return
    report = build_preset(
        record,
        out,
        config=config,
        limit=limit,
        images_from=images_from,
        work=work,
        progress=progress,
        overwrite=overwrite,
        show=lambda text: typer.echo(text, err=True),
    )
    typer.echo(report.format())
    if report.summary.interrupted:
        sys.exit(130)
    if report.summary.images == 0:
        raise ConfigError(f"no face was kept; see why in {Path(report.summary.work) / 'manifest.jsonl'}")


@dataset_app.command("presets")
def presets_command(
    as_json: bool = typer.Option(False, "--json", help="Print the full records as JSON."),
) -> None:
    """List the public sets of rendered faces that `dataset build --preset` knows."""
    from realface.data.presets import PRESETS

    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in PRESETS.values()], indent=2))
        return
    for p in PRESETS.values():
        flag = "  [NON-COMMERCIAL]" if p.non_commercial else ""
        count = sum(a.images or 0 for a in p.archives)
        typer.echo(f"{p.name:15s} {p.title}: {count:,} images, {p.license_name}{flag}")
        typer.echo(f"{'':15s} faces from {p.faces_from}; {p.homepage}")
        manual = [a.url for a in p.archives if a.manual]
        if manual:
            typer.echo(f"{'':15s} download by hand, then --images-from FILE: {manual[0]}")


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
