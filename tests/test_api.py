"""The public Python API and the command-line conventions shared by every subcommand."""

from __future__ import annotations

import doctest
import importlib
import json
import logging

import pytest

import realface
from realface.cli import log_level, split_global_flags
from realface.errors import RealFaceError
from tests.robustness._cli import run_realface

# Modules whose docstrings hold runnable examples (the README points users to them).
DOCTEST_MODULES = ("realface", "realface.invert", "realface.pipeline")


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"


def test_top_level_names():
    from realface.invert import InvertConfig
    from realface.pipeline import ApplyConfig, RealFace

    assert realface.RealFace is RealFace and realface.ApplyConfig is ApplyConfig
    assert realface.InvertConfig is InvertConfig
    assert callable(realface.invert) and realface.invert.InvertConfig is InvertConfig
    assert set(realface.__all__) >= {"RealFace", "ApplyConfig", "invert", "InvertConfig", "load_generator"}


def test_from_weights_names_every_missing_weight(tmp_path):
    from realface.weights import MissingWeightsError

    with pytest.raises(MissingWeightsError) as info:
        realface.RealFace.from_weights(rendering=None, device="cpu")
    message = str(info.value)
    assert "sg2ada-ffhq1024" in message and "tv-vgg16" in message


def test_version_flag():
    run = run_realface("--version")
    assert run.returncode == 0 and run.stdout.strip() == f"realface {realface.__version__}"


def test_verbosity_flags_are_accepted_after_the_subcommand(tmp_path):
    quiet = run_realface("weights", "list", "-q")
    assert quiet.returncode == 0, quiet.stderr
    verbose = run_realface("weights", "path", "lpips-vgg-v0.1", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "DEBUG" in verbose.stderr
    plain = run_realface("weights", "path", "lpips-vgg-v0.1")
    assert "DEBUG" not in plain.stderr
    both = run_realface("weights", "list", "-q", "-v")
    assert both.returncode == 1 and both.error_lines and "contradict" in both.error_lines[0]


def test_split_global_flags_stops_at_double_dash():
    rest, seen = split_global_flags(["apply", "x.jpg", "-v", "--", "-q"])
    assert rest == ["apply", "x.jpg", "--", "-q"] and seen == {"verbose": True, "quiet": False}


def test_log_level_from_environment():
    assert log_level(env="debug") == logging.DEBUG
    assert log_level(env="WARNING") == logging.WARNING
    assert log_level(quiet=True, env="debug") == logging.WARNING
    assert log_level() == logging.INFO
    with pytest.raises(RealFaceError, match="REALFACE_LOG_LEVEL"):
        log_level(env="loud")
    run = run_realface("weights", "path", "lpips-vgg-v0.1", env={"REALFACE_LOG_LEVEL": "debug"})
    assert run.returncode == 0 and "DEBUG" in run.stderr


def test_weights_list_json(tmp_path):
    from realface.weights import REGISTRY

    run = run_realface("weights", "list", "--json", "--cache-dir", tmp_path)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["cache"] == str(tmp_path / "weights")
    rows = {row["id"]: row for row in data["weights"]}
    assert set(rows) == set(REGISTRY)
    assert rows["lpips-vgg-v0.1"]["status"] == "package"
    assert rows["sg2ada-ffhq1024"]["status"] == "missing" and rows["sg2ada-ffhq1024"]["non_commercial"]
    assert rows["tv-vgg16"]["sha256"] == REGISTRY["tv-vgg16"].sha256


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_rule(monkeypatch):
    from realface.utils.progress import progress_enabled

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert progress_enabled(None, _Stream(True)) is True
    assert progress_enabled(None, _Stream(False)) is False  # logs hold no bars unless asked for
    assert progress_enabled(True, _Stream(False)) is True
    assert progress_enabled(False, _Stream(True)) is False
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress_enabled(None, _Stream(True)) is False
    assert progress_enabled(True, _Stream(True)) is True  # an explicit --progress still wins
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert progress_enabled(None, _Stream(True)) is True


def test_progress_option_resolves_to_a_bool_on_every_command():
    import click
    import typer

    from realface.cli import _load_commands, app

    _load_commands()
    seen = 0

    def walk(cmd: click.Command) -> None:
        nonlocal seen
        for param in cmd.params:
            if "--progress" in param.opts:
                seen += 1
                assert param.default is None, f"{cmd.name}: --progress must default to auto"
                ctx = click.Context(cmd)
                assert param.process_value(ctx, None) is False  # stderr is not a terminal under pytest
                assert param.process_value(ctx, True) is True
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    assert seen >= 9
