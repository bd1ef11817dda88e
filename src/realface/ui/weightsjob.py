"""The models tab's work: which weights are present, which the page still needs, and fetching one."""

from __future__ import annotations

from pathlib import Path

from realface.ui.config import UIConfig

__all__ = ["fetch_weight", "missing_models", "weights_rows"]


def weights_rows() -> list[list[str]]:
    """One row per registered weight: id, status, size, licence, use, and how to get it."""
    from realface.weights import REGISTRY, licence_line, locate, size_short

    rows = []
    for record in REGISTRY.values():
        path, kind = locate(record)
        status = {
            "cache": "present",
            "package": "present (package)",
            "foreign": "found",
            "missing": "missing",
        }[kind]
        if kind == "missing":
            if record.manual_only:
                how = f"manual download ({record.manual_hint or record.urls[0]}), then `realface weights import {record.id} FILE`"
            else:
                how = f"`realface weights fetch {record.id}` or `realface weights import {record.id} FILE`"
            if record.optional:
                status += " (optional)"
        else:
            how = str(path)
        licence = licence_line(record).removeprefix("licence: ")
        rows.append([record.id, status, size_short(record), licence, record.used_for, how])
    return rows


def missing_models(config: UIConfig) -> str | None:
    """A sentence naming the networks the page cannot run without, or None when all are there."""
    from realface.weights import REGISTRY, locate

    missing = []
    for what, ref in (("G_real", config.real), ("LPIPS VGG16", config.lpips_vgg or "tv-vgg16")):
        ref = str(ref)
        if ref in REGISTRY:
            if locate(ref)[0] is None:
                missing.append(
                    f"{what} (`{ref}`: `realface weights fetch {ref}` or `realface weights import`)"
                )
        elif not Path(ref).is_file():
            missing.append(f"{what} (no file {ref})")
    for path in config.renderings:
        if not Path(path).is_file():
            missing.append(f"G_rendering (no file {path})")
    if not missing:
        return None
    return "Runs will fail until these are present: " + "; ".join(missing) + "."


def fetch_weight(weight_id: str) -> str:
    """Download (or locate) one weight; returns a one-line report (errors raise :class:`RealFaceError`)."""
    from realface.weights import get_record, weight_path

    record = get_record(weight_id)
    path = weight_path(record, download=True, progress=False)
    return f"{record.id}: {path}"
