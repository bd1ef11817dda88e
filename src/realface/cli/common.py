"""Options shared by several commands, declared once (their defaults come from the library)."""

from __future__ import annotations

import typer

from realface.utils.progress import progress_enabled

__all__ = ["DEVICE_OPT", "PROGRESS_OPT"]


def _resolve_progress(value: bool | None) -> bool:
    return progress_enabled(value)


DEVICE_OPT = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto (cuda when available).")
PROGRESS_OPT = typer.Option(
    None,
    "--progress/--no-progress",
    callback=_resolve_progress,
    help="Progress bars (default: on when stderr is a terminal, off when TQDM_DISABLE is set or in logs).",
    show_default=False,
)
