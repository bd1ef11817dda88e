"""The ``realface`` command. Thin front end: parse options, build a config, call the library.

Each command group lives in its own module (``realface.cli.<group>``) and registers itself on
:data:`app` when imported; :func:`main` imports them all and turns :class:`RealFaceError` into a
one-line message and exit status 1 instead of a traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
import traceback
from pathlib import Path

import typer

from realface.errors import RealFaceError

app = typer.Typer(
    name="realface",
    help=(
        "Photo-realistic faces of the same identity for rendered apparel avatars.\n\n"
        "Every command accepts -v/--verbose and -q/--quiet (or REALFACE_LOG_LEVEL=debug|info|warning|error). "
        "Progress bars are on when stderr is a terminal and off in logs; --progress/--no-progress and "
        "TQDM_DISABLE=1 decide otherwise."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules that register commands on `app` (or add sub-apps). Each one is optional at import time
# only in the sense that a missing module is a packaging bug, reported loudly.
_COMMAND_MODULES = (
    "networks",
    "face",
    "weights",
    "apply",
    "train",
    "bench",
    "eval",
    "dataset",
    "ui",
    "study",
)


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Flags that every subcommand accepts, before or after its name: `realface -v apply ...` and
# `realface apply ... -v` mean the same.
_GLOBAL_FLAGS = {"-v": "verbose", "--verbose": "verbose", "-q": "quiet", "--quiet": "quiet"}


def _version(value: bool) -> None:
    if value:
        from realface import __version__

        typer.echo(f"realface {__version__}")
        raise typer.Exit()


def log_level(verbose: bool = False, quiet: bool = False, env: str | None = None) -> int:
    """The logging level: ``-v`` (debug) or ``-q`` (warnings and errors) win over
    ``REALFACE_LOG_LEVEL`` (debug, info, warning or error), which wins over the default (info)."""
    if verbose:
        return logging.DEBUG
    if quiet:
        return logging.WARNING
    if env:
        try:
            return _LEVELS[env.strip().lower()]
        except KeyError:
            raise RealFaceError(
                f"REALFACE_LOG_LEVEL={env!r} is not a log level; use one of {', '.join(_LEVELS)}"
            ) from None
    return logging.INFO


def split_global_flags(argv: list[str]) -> tuple[list[str], dict[str, bool]]:
    """Remove ``-v/--verbose/-q/--quiet`` from anywhere in ``argv`` (up to a ``--``); returns the
    remaining arguments and which flags were seen."""
    seen = {"verbose": False, "quiet": False}
    rest: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in _GLOBAL_FLAGS:
            seen[_GLOBAL_FLAGS[arg]] = True
        else:
            rest.append(arg)
    if seen["verbose"] and seen["quiet"]:
        raise RealFaceError("-v/--verbose and -q/--quiet contradict each other; give one of them")
    return rest, seen


@app.callback()
def _root(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Log debug messages (any subcommand accepts it)."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Only log warnings and errors (any subcommand accepts it)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    level = log_level(verbose, quiet, os.environ.get("REALFACE_LOG_LEVEL"))
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)  # also when logging was configured before (an embedding program)
    from realface import __version__

    logging.getLogger("realface").debug(
        "realface %s, python %s, arguments: %s", __version__, sys.version.split()[0], sys.argv[1:]
    )


def _load_commands() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"realface.cli.{name}")


def _write_crash_log(exc: BaseException) -> Path | None:
    """Write the traceback of an unexpected exception to a log file; returns its path (None if unwritable)."""
    from realface.weights.cache import cache_dir

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        folder = cache_dir() / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(f"realface {' '.join(sys.argv[1:])}\n{text}", encoding="utf-8")
        return path
    except OSError:
        return None


def _option_names() -> set[str]:
    """Every ``--long`` option name of every command."""
    from typing import Any

    _load_commands()
    names: set[str] = set()

    def walk(cmd: Any) -> None:  # a click command of the vendored click
        for param in cmd.params:
            names.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return names


# Config fields whose command-line option is not ``--<field with dashes>``.
_FIELD_OPTIONS = {"kimg_per_tick": "--tick", "xflip": "--mirror", "batch_size": "--batch"}


def render_error(exc: RealFaceError) -> str:
    """The message of ``exc`` for the command line: a config field (``fine_steps``) is named by its
    option (``--fine-steps``) where a command has one."""
    import re

    message = str(exc)
    field = getattr(exc, "field", None)
    if field:
        option = _FIELD_OPTIONS.get(field, "--" + field.replace("_", "-"))
        if option in _option_names():
            pattern = rf"(?<![\w-]){re.escape(field)}(?![\w-])"
            if re.search(pattern, message):
                message = re.sub(pattern, option, message)
            else:
                message = f"{option}: {message}"
    return message


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script and of ``python -m realface``.

    Usage errors are reported by Typer itself (exit status 2); a :class:`RealFaceError` from the
    library becomes ``error: <message>`` on stderr and exit status 1, never a traceback. Any other
    exception is a bug: it too ends as one ``error:`` line (exit status 1) that names the log file
    holding the traceback (``$REALFACE_HOME/logs/crash-*.log``). This guard is a last resort, not
    the way errors are reported: each known bad input raises its own :class:`RealFaceError`.
    """
    from realface.utils.memory import keep_freed_memory

    keep_freed_memory()  # large CPU buffers are reused instead of re-faulted (see realface.utils.memory)
    _load_commands()
    try:
        args, flags = split_global_flags(list(sys.argv[1:] if argv is None else argv))
        if flags["verbose"]:
            args.insert(0, "--verbose")
        if flags["quiet"]:
            args.insert(0, "--quiet")
        app(args=args, prog_name="realface")
    except RealFaceError as exc:
        typer.echo(f"error: {render_error(exc)}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last-resort guard described above
        log_path = _write_crash_log(exc)
        where = f"; the traceback is in {log_path}" if log_path else ""
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        typer.echo(f"error: unexpected {type(exc).__name__}: {first}{where} (please report it)", err=True)
        sys.exit(1)
