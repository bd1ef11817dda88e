"""The README's recipe (empty GPU machine -> G_rendering): every step runs with --dry-run in an empty
folder, with an empty weights cache; nothing is written, and each printed plan holds the step's key facts."""

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
def test_each_recipe_step_runs_dry(words, tmp_path, tmp_path_factory, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # an empty machine: nothing here, and a dry run writes nothing
    cache = tmp_path_factory.mktemp("recipe_cache") / "realface"  # not created by a dry run either
    monkeypatch.setenv("REALFACE_HOME", str(cache))
    name, cmd, _rest = _command(words)
    assert any(p.name == "dry_run" for p in cmd.params), f"`realface {name}` has no --dry-run"
    assert run_cli(*words, "--dry-run") == 0, capsys.readouterr().err
    plan = json.loads(capsys.readouterr().out)
    if name == "weights fetch":
        ids = [w for w in words[2:] if not w.startswith("-")]
        assert [w["id"] for w in plan["weights"]] == ids
        for w in plan["weights"]:
            assert w["destination"] == str(cache / "weights" / w["id"] / w["filename"])
            assert w["licence"].startswith("licence: ")
            assert w["path"] is not None or (w["action"] == "download" and w["download_urls"]), w
        ffhq = next(w for w in plan["weights"] if w["id"] == "sg2ada-ffhq1024")
        assert ffhq["status"] == "missing" and ffhq["urls"][0].endswith("/ffhq.pkl")
        assert "[NON-COMMERCIAL]" in ffhq["licence"]
        assert ffhq["blocked"] == "offline mode (REALFACE_OFFLINE=1)"  # the test suite is offline
    if name == "dataset build":
        assert plan["preset"] == words[words.index("--preset") + 1]
        assert plan["settings"]["size"] == int(words[words.index("--size") + 1])
    if name == "train":  # the paper's settings
        assert (plan["kimg"], plan["batch"], plan["lr"], plan["gamma"]) == (40, 32, 0.002, 10)
    if name == "export":
        assert plan["out"] == words[words.index("-o") + 1] and plan["network"] == "G_ema"
        assert plan["checkpoint"].startswith(f"not present yet: {words[1]}")
    if name == "eval consistency":
        assert plan["real"] == {**plan["real"], "given": "sg2ada-ffhq1024", "kind": "weights id"}
        assert plan["rendering"]["status"] == "not present yet"
        assert (plan["num"], plan["out"]) == (1000, "consistency.json")
        assert plan["identity_model"]["embedder"] == "dlib"
    if name == "apply":
        assert plan["mode"] == "transfer"
    assert not any(tmp_path.iterdir())
    assert not cache.exists()
