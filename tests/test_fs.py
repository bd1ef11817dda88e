"""Atomic writes (realface.utils.fs): short temporary names, the user's umask, nothing left on failure."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest

from realface.utils.fs import (
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    is_temporary,
)

LONGEST = 255  # NAME_MAX of the usual Linux file systems


@contextlib.contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _tiny_generator():
    from realface.checkpoints import load_generator
    from tests.conftest import data_file

    return load_generator(data_file("stylegan2-ada", "sg2ada_tiny64.pkl"), cache=False)


@pytest.mark.parametrize("length", [244, LONGEST])
def test_the_longest_legal_names_can_be_written(tmp_path: Path, length: int):
    text = tmp_path / ("t" * (length - 5) + ".json")
    atomic_write_text(text, "{}\n")
    assert text.read_text() == "{}\n"
    image = tmp_path / ("i" * (length - 4) + ".png")
    from PIL import Image

    with atomic_path(image) as tmp:
        Image.new("RGB", (4, 4)).save(tmp, format="PNG")
    assert Image.open(image).size == (4, 4)
    folder = tmp_path / ("d" * length)
    with atomic_dir(folder) as tmp:
        (tmp / "a").write_bytes(b"x")
    assert (folder / "a").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([text.name, image.name, folder.name])


def test_temporary_names_are_short_and_recognised(tmp_path: Path):
    for dest in (tmp_path / ("x" * 240 + ".png"), tmp_path / "a", tmp_path / ("b." + "c" * 200)):
        with atomic_path(dest) as tmp:
            assert tmp.parent == dest.parent and len(tmp.name) <= 27 and is_temporary(tmp.name), tmp.name
            assert tmp.exists() and tmp.stat().st_size == 0
    with atomic_dir(tmp_path / ("y" * 250)) as tmp:
        assert len(tmp.name) <= 27 and is_temporary(tmp.name) and tmp.is_dir()
    assert not is_temporary("a.png") and not is_temporary(".hidden.tmp")


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_respect_the_umask(tmp_path: Path, mask: int, file_mode: int, dir_mode: int):
    from realface.checkpoints import save_networks
    from realface.utils.fs import atomic_open

    with _umask(mask):
        atomic_write_text(tmp_path / "manifest.jsonl", "{}\n")
        atomic_write_bytes(tmp_path / "result.png", b"png")
        with atomic_open(tmp_path / "notes.txt", "w") as f:
            f.write("x")
        save_networks({"G": _tiny_generator()}, tmp_path / "model.safetensors")
        with atomic_dir(tmp_path / "ckpt") as tmp:
            atomic_write_text(tmp / "state.json", "{}")
    for name in ("manifest.jsonl", "result.png", "notes.txt", "model.safetensors", "ckpt/state.json"):
        assert _mode(tmp_path / name) == file_mode, name
    assert _mode(tmp_path / "ckpt") == dir_mode


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path: Path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("simulated failure")
    folder = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt), atomic_dir(folder) as tmp:
        (tmp / "a").write_bytes(b"half")
        raise KeyboardInterrupt
    assert dest.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_a_folder_replaces_the_old_one_whole(tmp_path: Path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "old").write_bytes(b"1")
    with atomic_dir(folder) as tmp:
        (tmp / "new").write_bytes(b"2")
    assert sorted(p.name for p in folder.iterdir()) == ["new"]
    assert (folder / "new").read_bytes() == b"2"
