"""The batch tab's work: ``realface apply`` on a server folder, and the manifest table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from realface.errors import ConfigError
from realface.ui.config import Settings, UIConfig
from realface.ui.files import within
from realface.ui.models import ModelStore
from realface.ui.progress import Job

if TYPE_CHECKING:
    from realface.batch import BatchSummary

__all__ = ["manifest_rows", "run_folder"]


def run_folder(
    job: Job,
    store: ModelStore,
    config: UIConfig,
    settings: Settings,
    input_dir: Path,
    output_dir: Path,
) -> BatchSummary:
    """``realface apply INPUT -o OUTPUT`` from the page: the same manifest, resume and config hash
    (a run started here can be continued from the command line and back). Returns the summary."""
    from realface.batch import collect_inputs
    from realface.pipeline import run_catalogue, run_info

    if output_dir == input_dir:
        raise ConfigError("the output folder must differ from the input folder")
    if within(input_dir, output_dir):
        raise ConfigError(f"the input folder {input_dir} lies inside the output folder {output_dir}")
    items = collect_inputs([input_dir], exclude=[output_dir])
    if not items:
        raise ConfigError(f"{input_dir}: no images found (looked for .jpg, .png, .webp, .tif)")
    apply_cfg = settings.apply_config(config.batch_size, config.max_pixels, save_all=False)
    job.phase = "loading models"
    pipeline = store.job(settings.rendering, apply_cfg)
    rendering = store.check_rendering(settings.rendering)
    info = run_info(config.real, rendering, apply_cfg)
    plan = {"run": len(items), "started": 0}

    def on_plan(to_run: int, skipped: int) -> None:
        plan["run"] = to_run
        job.phase = f"{skipped} already done; starting" if skipped else "starting"

    def step_callback(ctx):
        plan["started"] += 1
        job.begin_item(plan["started"], plan["run"], ctx.key)
        return job.step_callback, job.end_item

    return run_catalogue(
        pipeline,
        [input_dir],
        output_dir,
        info,
        suffix=settings.suffix(),
        progress=False,
        step_callback=step_callback,
        on_plan=on_plan,
    )


def manifest_rows(outdir: Path) -> list[list[Any]]:
    """The latest record of each item of a batch folder: [item, status, seconds, outputs or error]."""
    from realface.batch import MANIFEST_NAME, Manifest

    path = outdir / MANIFEST_NAME
    if not path.is_file():
        return []
    rows = []
    for key, rec in sorted(Manifest(path).state().items()):
        detail = rec.error if rec.status == "failed" else ", ".join(rec.outputs)
        seconds = None if rec.seconds is None else round(float(rec.seconds), 1)
        rows.append([key, rec.status, seconds, detail or ""])
    return rows
