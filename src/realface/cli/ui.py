"""`realface ui`: the local web page (Gradio)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from realface.cli import app
from realface.cli.common import DEVICE_OPT, LPIPS_VGG_OPT, MAX_PIXELS_HELP, config_option
from realface.ui.config import UIConfig


def _ui_option(name: str, decl: str, help: str) -> Any:
    """An option of ``realface ui`` whose default is :class:`UIConfig`'s ``name``."""
    return config_option(UIConfig, name, decl, help=help)


def _path_option(decl: str, help: str) -> Any:
    """An optional path (default: none given)."""
    return typer.Option(None, decl, help=help)


@app.command()
def ui(
    host: str = _ui_option("host", "--host", "Address to serve on (127.0.0.1: this machine only)."),
    port: int = _ui_option("port", "--port", "Port to serve on."),
    real: str = _ui_option("real", "--real", "G_real: a file or a weights id."),
    rendering: list[Path] = _path_option("--rendering", "A G_rendering checkpoint to offer (repeatable)."),
    models: Path = _path_option("--models", "Also offer every .safetensors/.pkl checkpoint in this folder."),
    workdir: Path = _path_option(
        "--workdir", "The app's own folder: uploads, previews, results (default: $REALFACE_HOME/ui)."
    ),
    batch_root: Path = _path_option(
        "--batch-root", "The batch tab may only read and write below this folder (default: here)."
    ),
    device: str = DEVICE_OPT,
    batch: int = _ui_option("batch_size", "--batch", "Faces inverted together."),
    lpips_vgg: Path = LPIPS_VGG_OPT,
    max_upload_mb: int = _ui_option("max_upload_mb", "--max-upload-mb", "Largest accepted upload, in MB."),
    max_pixels: int = _ui_option("max_pixels", "--max-pixels", MAX_PIXELS_HELP),
    max_images: int = _ui_option("max_images", "--max-images", "Most images in one run of the image tab."),
    share: bool = _ui_option("share", "--share", "Open a public Gradio link (off by default)."),
) -> None:
    """Serve the web page: try an apparel render, run a folder as a batch, see the weights.

    Binds 127.0.0.1 unless --host says otherwise; no public link unless --share; no analytics.
    """
    from realface.errors import ConfigError
    from realface.ui import launch
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
