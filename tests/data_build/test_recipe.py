"""The README's recipe (empty GPU machine -> G_rendering): every step runs with --dry-run; the steps
whose command has no --dry-run have their arguments parsed by the command itself."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from realface.cli import _load_commands, app
from tests.data_build.test_build import run_cli

README = Path(__file__).resolve().parents[2] / "README.md"
REQUIRED = {"dataset build", "train", "export", "eval consistency", "apply"}


def recipe_commands() -> list[list[str]]:
    """The realface command lines of the recipe's first bash block (torchrun's prefix removed)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## Recipe: from an empty GPU machine to a G_rendering")
    block = text[text.index("```bash\n", start) + len("```bash\n") :]
    block = block[: block.index("```")]
    out = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["torchrun"]:
            words = words[words.index("realface") + 1 :]
        elif words[:1] == ["realface"]:
            words = words[1:]
        else:
            continue
        out.append(words)
    return out


def _command(words: list[str]) -> tuple[str, Any, list[str]]:
    """The (name, Click command, remaining arguments) a command line resolves to."""
    _load_commands()
    cmd: Any = typer.main.get_command(app)
    names = []
    rest = list(words)
    while hasattr(cmd, "commands") and rest and rest[0] in cmd.commands:
        names.append(rest[0])
        cmd = cmd.commands[rest.pop(0)]
    return " ".join(names), cmd, rest


def test_the_recipe_has_every_step():
    names = [_command(w)[0] for w in recipe_commands()]
    assert REQUIRED <= set(names), names
    assert names.index("dataset build") < names.index("train") < names.index("export")
    assert names.index("export") < names.index("eval consistency") < names.index("apply")
    assert any(w[words_i] == "--rendering" for w in recipe_commands() if w[0] == "apply"
               for words_i in range(len(w)))  # fmt: skip


@pytest.mark.parametrize("words", recipe_commands(), ids=lambda w: " ".join(w[:2]))
def test_each_recipe_step_runs_dry(words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # an empty machine: nothing here, and a dry run writes nothing
    name, cmd, rest = _command(words)
    if any(p.name == "dry_run" for p in cmd.params):
        assert run_cli(*words, "--dry-run") == 0, capsys.readouterr().err
        plan = json.loads(capsys.readouterr().out)
        if name == "dataset build":
            assert plan["preset"] == words[words.index("--preset") + 1]
            assert plan["settings"]["size"] == int(words[words.index("--size") + 1])
        if name == "train":  # the paper's settings
            assert (plan["kimg"], plan["batch"], plan["lr"], plan["gamma"]) == (40, 32, 0.002, 10)
        if name == "apply":
            assert plan["mode"] == "transfer"
    else:
        ctx = cmd.make_context(name, list(rest))  # raises a usage error on a wrong option
        assert ctx.params
        with pytest.raises(Exception, match="No such option"):
            cmd.make_context(name, [*rest, "--no-such-option"])
    assert not any(tmp_path.iterdir())
