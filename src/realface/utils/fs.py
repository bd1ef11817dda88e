"""Atomic file writing: a reader never sees a half-written output, an interrupted write leaves nothing."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_path", "atomic_open", "atomic_write_bytes", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it is fsynced and renamed over ``dest``.

    The temporary file lives in the same directory so that the final ``os.replace`` is atomic. On any
    exception the temporary file is removed and ``dest`` is untouched. ``suffix`` defaults to the
    suffix of ``dest`` so that writers which infer a format from the extension (PIL, safetensors) work.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dest.name}.", suffix=(dest.suffix if suffix is None else suffix) + ".tmp", dir=dest.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(dest: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """``open()`` for writing that only replaces ``dest`` once the block has finished without error."""
    if "r" in mode or "a" in mode:
        raise ValueError(f"atomic_open is for writing; got mode {mode!r}")
    with atomic_path(dest) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_open(dest, "wb") as f:
        f.write(data)


def atomic_write_text(dest: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    with atomic_open(dest, "w", encoding=encoding) as f:
        f.write(text)
