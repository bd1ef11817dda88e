"""Atomic file writing: a reader never sees a half-written output, an interrupted write leaves nothing.

This module owns every atomic write of the package. A temporary file or folder is created beside its
destination with a short name, ``.rf-<8 hex digits>[<suffix>].tmp`` (at most 27 characters, whatever
the destination's name), so any legal file name can be written; :data:`TEMP_NAME` matches these
names, so a crashed writer's leftovers can be recognised and removed. Files and folders are created
with the permissions the user's umask gives a new file (``0666 & ~umask``; folders ``0777 & ~umask``),
exactly as ``open()`` and ``mkdir()`` would.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TEMP_NAME",
    "atomic_path",
    "atomic_dir",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "is_temporary",
]

TEMP_NAME = re.compile(r"^\.rf-[0-9a-f]{8}(\.[A-Za-z0-9_]{1,10})?\.tmp$")
"""The names of the temporary files and folders made by :func:`atomic_path` and :func:`atomic_dir`."""

_SUFFIX = re.compile(r"^\.[A-Za-z0-9_]{1,10}$")
_ATTEMPTS = 100


def is_temporary(name: str) -> bool:
    """Whether ``name`` (a bare file name) is one of this module's temporary names."""
    return TEMP_NAME.match(name) is not None


def _temp_suffix(dest: Path, suffix: str | None) -> str:
    """The destination's suffix when it is short and plain (writers infer formats from it), else ''."""
    s = dest.suffix if suffix is None else suffix
    return s if _SUFFIX.match(s) else ""


def _make_temp(folder: Path, suffix: str, make: Callable[[Path], None]) -> Path:
    for _ in range(_ATTEMPTS):
        path = folder / f".rf-{secrets.token_hex(4)}{suffix}.tmp"
        try:
            make(path)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{folder}: could not create a temporary name after {_ATTEMPTS} attempts")


def _new_file(path: Path) -> None:
    # O_EXCL: never reuse a name; mode 0o666 is reduced by the umask as for open().
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    os.close(fd)


def _restore_mode(path: Path, mode: int) -> None:
    """Give ``path`` back ``mode`` when a writer replaced the file with one of its own (some libraries
    write to a private 0600 file and rename it); a hard link (several names) is left alone."""
    st = path.stat()
    if stat.S_IMODE(st.st_mode) != mode and st.st_nlink == 1:
        os.chmod(path, mode)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened or synced
        _fsync(folder)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a new, empty temporary file beside ``dest``; on success it is fsynced and renamed over ``dest``.

    The temporary file lives in the same folder so that the final ``os.replace`` is atomic, and has a
    short name (:data:`TEMP_NAME`) independent of ``dest``'s. It ends in ``suffix`` (default: the suffix
    of ``dest``, when at most 10 plain characters) + ``.tmp``, so writers that infer a format from the
    extension work. On any exception the temporary file is removed and ``dest`` is untouched. The
    result has the mode a new file gets under the current umask.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_temp(dest.parent, _temp_suffix(dest, suffix), _new_file)
    try:
        mode = stat.S_IMODE(tmp.stat().st_mode)  # what the umask gives a new file
        yield tmp
        _restore_mode(tmp, mode)
        _fsync(tmp)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(dest.parent)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a new, empty temporary folder beside ``dest``; on success it replaces ``dest`` as a whole.

    Files written into the folder should themselves be complete before the block ends (write them with
    :func:`atomic_path` or fsync them). An existing ``dest`` folder is removed just before the rename. On
    any exception the temporary folder and everything in it is removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_temp(dest.parent, "", lambda p: p.mkdir())
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(dest.parent)


@contextlib.contextmanager
def atomic_open(dest: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """``open()`` for writing that only replaces ``dest`` once the block has finished without error."""
    if "r" in mode or "a" in mode:
        raise ValueError(f"atomic_open is for writing; got mode {mode!r}")
    with atomic_path(dest) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically (see :func:`atomic_path`)."""
    with atomic_open(dest, "wb") as f:
        f.write(data)


def atomic_write_text(dest: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``dest`` atomically (see :func:`atomic_path`)."""
    with atomic_open(dest, "w", encoding=encoding) as f:
        f.write(text)
