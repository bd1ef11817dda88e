"""Which files are images: the one suffix list in realface.imageio and every place that searches folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from realface.batch import collect_catalogue
from realface.errors import ConfigError, RealFaceError
from realface.imageio import IMAGE_SUFFIXES, image_suffixes_text, is_image_file, list_images
from realface.metrics import files as metric_files
from realface.train.dataset import ImageDataset


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_the_suffix_list():
    assert IMAGE_SUFFIXES == (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")
    assert image_suffixes_text() == ".jpg, .jpeg, .png, .webp, .tif, .tiff"
    assert all(is_image_file(f"dir/x{s.upper()}") for s in IMAGE_SUFFIXES)
    assert not any(is_image_file(n) for n in ["x.txt", "x.png.tmp", "x", "png", "x.bmp", "x.zip"])
    assert is_image_file(Path("a.PNG")) and not is_image_file("a.png", suffixes=[".jpg"])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    for rel in [
        "b.png",
        "A.JPG",
        "z.tiff",
        "notes.txt",
        ".hidden.png",
        "sub/c.webp",
        ".git/x.png",
        "out/o.png",
    ]:
        _touch(root / rel)
    _touch(tmp_path / "elsewhere" / "linked.png")
    os.symlink(tmp_path / "elsewhere", root / "link")  # links to folders are not followed
    return root


def test_list_images_walk_order_hidden_links_and_exclusions(tree: Path):
    assert list_images(tree) == [
        tree / "A.JPG",
        tree / "b.png",
        tree / "z.tiff",
        tree / "out" / "o.png",
        tree / "sub" / "c.webp",
    ]
    assert list_images(tree, recursive=False) == [tree / "A.JPG", tree / "b.png", tree / "z.tiff"]
    assert list_images(tree, exclude=[tree / "out"], suffixes=[".PNG"]) == [tree / "b.png"]
    assert list_images(tree / "missing") == []


def test_list_images_keeps_a_relative_folder_relative(tree: Path, monkeypatch):
    monkeypatch.chdir(tree.parent)
    assert list_images(Path("in") / "sub") == [Path("in") / "sub" / "c.webp"]


def test_every_folder_search_uses_the_list(tree: Path, tmp_path: Path):
    expected = {p.relative_to(tree).as_posix() for p in list_images(tree)}
    batch_found = collect_catalogue([tree], tmp_path / "results")
    assert {p.relative_to(tree).as_posix() for p in batch_found} == expected
    metric_found = metric_files.list_images(tree)
    assert [p.relative_to(tree).as_posix() for p in metric_found] == sorted(expected)

    empty = tmp_path / "empty"
    _touch(empty / "x.bmp")
    with pytest.raises(RealFaceError, match=f"looked for {image_suffixes_text()}"):
        collect_catalogue([empty], tmp_path / "results")
    with pytest.raises(ConfigError, match=rf"no image files \({image_suffixes_text()}\)"):
        metric_files.list_images(empty)


def test_training_sets_read_tiff_files(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(data / "a.png")
    Image.new("RGB", (8, 8), (40, 50, 60)).save(data / "b.tif")
    (data / "c.bmp").write_bytes(b"BM not listed")
    dataset = ImageDataset(data)
    assert dataset.names == ("a.png", "b.tif") and dataset.skipped == ()
