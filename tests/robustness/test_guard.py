"""The CLI's last-resort guard: an unexpected exception is one ``error:`` line naming a log file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import realface.checkpoints
from realface.cli import main


def test_unexpected_exception_is_one_error_line_with_log(tmp_path, monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise ZeroDivisionError("deliberate failure for the guard test")

    monkeypatch.setattr(realface.checkpoints, "convert_pickle", boom)
    with pytest.raises(SystemExit) as exc:
        main(["convert", str(tmp_path / "a.pkl"), str(tmp_path / "b.safetensors")])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert "ZeroDivisionError" in lines[0] and "deliberate failure" in lines[0]
    log = Path(re.search(r"traceback is in (\S+) ", lines[0]).group(1))
    text = log.read_text()
    assert "Traceback" in text and "boom" in text
    assert not (tmp_path / "b.safetensors").exists()
