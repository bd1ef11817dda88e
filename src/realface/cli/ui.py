"""`realface ui`: the local web page (Gradio)."""

from __future__ import annotations

from pathlib import Path

import typer

from realface.cli import app
from realface.cli.common import DEVICE_OPT
from realface.imageio import DEFAULT_MAX_PIXELS


@app.command()
def ui(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to serve on (127.0.0.1: this machine only)."
    ),
    port: int = typer.Option(7860, "--port", help="Port to serve on."),
    real: str = typer.Option("sg2ada-ffhq1024", "--real", help="G_real: a file or a weights id."),
    rendering: list[Path] = typer.Option(
        None, "--rendering", help="A G_rendering checkpoint to offer (repeatable)."
    ),
    models: Path = typer.Option(
        None, "--models", help="Also offer every .safetensors/.pkl checkpoint in this folder."
    ),
    workdir: Path = typer.Option(
        None,
        "--workdir",
        help="The app's own folder: uploads, previews, results (default: $REALFACE_HOME/ui).",
    ),
    batch_root: Path = typer.Option(
        None, "--batch-root", help="The batch tab may only read and write below this folder (default: here)."
    ),
    device: str = DEVICE_OPT,
    batch: int = typer.Option(4, "--batch", help="Faces inverted together."),
    lpips_vgg: Path = typer.Option(None, "--lpips-vgg", help="VGG16 state dict for LPIPS (default: cached)."),
    max_upload_mb: int = typer.Option(50, "--max-upload-mb", help="Largest accepted upload, in MB."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", help="Refuse larger images."),
    max_images: int = typer.Option(16, "--max-images", help="Most images in one run of the image tab."),
    share: bool = typer.Option(False, "--share", help="Open a public Gradio link (off by default)."),
) -> None:
    """Serve the web page: try an apparel render, run a folder as a batch, see the weights.

    Binds 127.0.0.1 unless --host says otherwise; no public link unless --share; no analytics.
    """
    from realface.errors import ConfigError
    from realface.ui import UIConfig, launch
    from realface.weights import cache_dir

    for path in rendering or []:
        if not path.is_file():
            raise ConfigError(f"--rendering {path}: no such file")
    if models is not None and not models.is_dir():
        raise ConfigError(f"--models {models}: not a folder")
    if batch_root is not None and not batch_root.is_dir():
        raise ConfigError(f"--batch-root {batch_root}: not a folder")
    config = UIConfig(
        workdir=workdir if workdir is not None else cache_dir() / "ui",
        host=host,
        port=port,
        real=real,
        renderings=tuple(rendering or ()),
        models_dir=models,
        lpips_vgg=lpips_vgg,
        device=device,
        batch_root=batch_root,
        max_upload_mb=max_upload_mb,
        max_pixels=max_pixels,
        max_images=max_images,
        share=share,
        batch_size=batch,
    )
    launch(config)
