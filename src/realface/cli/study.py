"""`realface study …`: make a blind authenticity study, serve it to participants, report the votes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from realface.cli import app
from realface.cli.common import MAX_PIXELS_HELP, config_option
from realface.errors import ConfigError
from realface.study.config import ServeConfig
from realface.study.create import CreateConfig

study_app = typer.Typer(
    name="study",
    help="A blind study: participants pick the most realistic of several methods' results.",
    no_args_is_help=True,
)
app.add_typer(study_app, name="study")

log = logging.getLogger("realface.study")


def _method(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise ConfigError(f"--method {text!r}: write NAME=FOLDER, e.g. --method ours=out_a/")
    return name, Path(folder)


@study_app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="The study's title, shown to participants."),
    method: list[str] = typer.Option(..., "--method", help="NAME=FOLDER of one method's results (repeat)."),
    out: Path = typer.Option(..., "--out", "-o", help="The study folder to make (new or empty)."),
    crop: str = config_option(
        CreateConfig, "crop", "--crop", help="face: a square around the face; full: whole images."
    ),
    reference: Path = typer.Option(
        None, "--reference", help="Folder of the rendered inputs: shown, with 'same person?' asked."
    ),
    meta: Path = typer.Option(
        None, "--meta", help="Face metadata of `realface align --meta` (else the faces are detected)."
    ),
    face_index: int = config_option(
        CreateConfig, "face_index", "--face-index", help="Which face of an image (0: the largest)."
    ),
    margin: float = config_option(CreateConfig, "margin", "--margin", help="Face crop side / face box side."),
    size: int = config_option(
        CreateConfig, "size", "--size", help="Crop side (full: longest side, never enlarged), pixels."
    ),
    seed: int = config_option(
        CreateConfig, "seed", "--seed", help="Seed of the participants' orders (default: random)."
    ),
    max_pixels: int = config_option(CreateConfig, "max_pixels", "--max-pixels", help=MAX_PIXELS_HELP),
) -> None:
    """Pair the methods' folders by relative path and write a study folder (method names hidden)."""
    from realface.study import create_study

    if meta is not None and not meta.is_dir():
        raise ConfigError(f"--meta {meta}: not a folder")
    config = CreateConfig(
        name=name,
        methods=tuple(_method(m) for m in method),
        reference=reference,
        crop=crop,  # type: ignore[arg-type]  # checked by CreateConfig
        meta=meta,
        face_index=face_index,
        margin=margin,
        size=size,
        seed=seed,
        max_pixels=max_pixels,
    )
    result = create_study(config, out)
    for line in result.mismatches:
        log.warning("not paired: %s", line)
    for line in result.skipped:
        log.warning("skipped: %s", line)
    study = result.study
    typer.echo(
        f"study {study.name!r}: {len(study.items)} item(s), {len(study.methods)} methods, seed {study.seed}, "
        f"{len(result.mismatches)} unpaired, {len(result.skipped)} skipped -> {out}"
    )


@study_app.command("serve")
def serve(
    folder: Path = typer.Argument(..., help="The study folder."),
    host: str = config_option(
        ServeConfig, "host", "--host", help="Address to serve on (127.0.0.1: this machine only)."
    ),
    port: int = config_option(ServeConfig, "port", "--port", help="Port to serve on."),
) -> None:
    """Serve the participants' page; votes are appended to FOLDER/votes.jsonl."""
    from realface.study.serve import serve_study

    serve_study(folder, ServeConfig(host=host, port=port))


@study_app.command("report")
def report(
    folder: Path = typer.Argument(..., help="The study folder."),
    out: Path = typer.Option(None, "--out", "-o", help="Where to write the report (default: FOLDER/report)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    as_csv: bool = typer.Option(False, "--csv", help="Print the raw table of votes as CSV."),
) -> None:
    """Win rates (Wilson 95 %), pairwise preference (binomial test, Bradley-Terry), per participant,
    agreement (Fleiss' kappa); writes report.json, votes.csv and chart.png."""
    from realface.study import Study
    from realface.study.report import format_report, write_report

    if as_json and as_csv:
        raise ConfigError("give --json or --csv, not both")
    study = Study.load(folder)
    result, where = write_report(study, out)
    if as_json:
        typer.echo(json.dumps(result, indent=1))
    elif as_csv:
        typer.echo((where / "votes.csv").read_text(encoding="utf-8"), nl=False)
    else:
        typer.echo(format_report(result))
        typer.echo(f"written: {where / 'report.json'}, {where / 'votes.csv'}, {where / 'chart.png'}")
