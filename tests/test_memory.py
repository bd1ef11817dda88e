"""The allocator setting used by the command-line front ends."""

from __future__ import annotations

import subprocess
import sys

CODE = "from realface.utils.memory import keep_freed_memory as k; print(k(), k())"


def test_keep_freed_memory_applies_on_glibc_and_can_be_disabled(monkeypatch):
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["True", "True"]  # this project's machines are Linux/glibc; idempotent
    monkeypatch.setenv("REALFACE_MALLOC", "system")
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]
