"""Run the ``realface`` command as a user would (a subprocess) and check the reliability contract.

The contract for a hostile or broken input: exit status 1, exactly one line on stderr that starts
with ``error:`` and names the offending file, no traceback anywhere, no output file, and every input
byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Run", "run_realface", "snapshot", "assert_refused"]

_TIMEOUT = 180


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def run_realface(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """``python -m realface ARGS`` in a fresh process, offline, with the test's own REALFACE_HOME."""
    full_env = {**os.environ, "REALFACE_OFFLINE": "1", "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
    full_env.update(env or {})
    argv = [str(a) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "realface", *argv],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    return Run(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file below ``roots`` (files or folders), keyed by path."""
    out: dict[str, str] = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def assert_refused(run: Run, names: str | Path, inputs: dict[str, str] | None = None, outputs=()) -> None:
    """The contract above. ``names``: text (usually a file name) the error line must contain;
    ``inputs``: a :func:`snapshot` taken before the run; ``outputs``: paths that must not exist."""
    where = f"realface {' '.join(run.args)}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert run.returncode == 1, f"exit status {run.returncode}, expected 1\n{where}"
    assert len(run.error_lines) == 1, f"expected exactly one 'error:' line\n{where}"
    assert str(names) in run.error_lines[0], f"the error line does not name {names!s}\n{where}"
    assert "Traceback" not in run.stderr + run.stdout, f"traceback printed\n{where}"
    assert "unexpected" not in run.error_lines[0], (
        f"ended in the last-resort guard, not a real check\n{where}"
    )
    for path in outputs:
        assert not Path(path).exists(), f"output {path} was written\n{where}"
    if inputs is not None:
        after = {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in inputs if Path(p).exists()}
        assert after == inputs, f"an input changed or vanished\n{where}"
